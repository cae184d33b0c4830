"""The scenario file: every section and field, validated with pydantic, with its default."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kairos.cluster.disaggregation import DECIDERS
from kairos.cluster.migration import MIGRATION_POLICIES
from kairos.cluster.registry import ROUTERS
from kairos.engine.policies import POLICIES
from kairos.predict import PREDICTORS
from kairos.registry import Registry
from kairos.scenario.step_models import STEP_TIME_MODELS
from kairos.workload.config import WorkloadConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _described(registry: Registry[Any]) -> str:
    """A registry's names, each with its summary, for a field's description."""
    return " ".join(f"{name}: {summary.rstrip('.')}." for name, summary in registry.summaries().items())


def _name_shorthand(field: str):
    """Let a section be written as a bare string, e.g. `model: llama-3.1-8b`."""

    def before(cls, value: Any) -> Any:
        return {field: value} if isinstance(value, str) else value

    return model_validator(mode="before")(classmethod(before))


class ModelSection(_Section):
    """Which model is served."""

    name: str = Field("llama-3.1-8b", description="Catalog name (`kairos models`), Hugging Face"
                      " id, or path to a config.json (or its directory). Default llama-3.1-8b.")
    max_model_len: int | None = Field(None, ge=1, description="Longest prompt + output accepted;"
                                      " longer requests are rejected. Default: the model's"
                                      " max_position_embeddings.")
    weights_dtype: str | None = Field(None, description="Weight precision: bf16, fp16, fp8, nvfp4,"
                                      " mxfp4 or int4 (weight-only). Default: the checkpoint's (its"
                                      " quantization_config or an -FP8/-NVFP4... suffix), else bf16.")
    kv_cache_dtype: str | None = Field(None, description="KV-cache precision: bf16, fp16 or fp8"
                                       " (vLLM's --kv-cache-dtype; auto = the model's). Default auto.")
    _shorthand = _name_shorthand("name")


class HardwareSection(_Section):
    """GPUs of one replica and of the cluster."""

    gpu: str = Field("h100", description="GPU kind (`kairos gpus`). Default h100.")
    tp: int = Field(1, ge=1, description="Tensor-parallel GPUs per engine. Default 1.")
    dp: int = Field(1, ge=1, description="Data-parallel engines per replica (vLLM's"
                    " --data-parallel-size): each its own scheduler and KV cache; an MoE model's"
                    " step in lockstep. Default 1.")
    ep: bool = Field(False, description="Expert parallelism (vLLM's --enable-expert-parallel): an"
                     " MoE model's experts split over the replica's tp x dp GPUs. Default off.")
    pp: int = Field(1, ge=1, le=1, description="Pipeline-parallel stages: not modelled, only 1 is"
                    " accepted. Default 1.")
    count: int | None = Field(None, ge=1, description="Total GPUs; when set, cluster.replicas"
                              " defaults to count / (tp x dp). Default: replicas x tp x dp.")

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.dp


class EngineSection(_Section):
    """Engine settings, named and defaulted as in vLLM (`vllm serve` on a GPU under 70 GiB)."""

    block_size: int = Field(16, ge=1, description="Tokens per KV-cache block. Default 16.")
    max_num_seqs: int = Field(256, ge=1, description="Most requests running at once. Default 256.")
    max_num_batched_tokens: int = Field(2048, ge=1, description="Token budget of one step, shared"
                                        " by decodes and prefill chunks. Default 2048.")
    enable_prefix_caching: bool = Field(True, description="Reuse KV of shared prefixes. Default on.")
    enable_chunked_prefill: bool = Field(True, description="Split long prompts across steps."
                                         " Default on.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="Share of GPU memory the"
                                          " engine may use (weights, activations, KV). Default 0.9.")
    num_gpu_blocks: int | None = Field(None, ge=1, description="KV blocks per replica, overriding"
                                       " the size derived from memory. Default: derived.")
    policy: str = Field("fcfs", description=f"Scheduling policy (`kairos policies`). {_described(POLICIES)}"
                        " Default fcfs.")
    policy_options: dict[str, float | int | str] = Field(default_factory=dict, description="Knobs of the"
                                                        " policy (e.g. sjf has none, laps short_tokens)."
                                                        " Default none.")
    predictor: str | None = Field(None, description="Output-length predictor, for policies that rank by"
                                  f" predicted lengths. {_described(PREDICTORS)} Default: histogram for"
                                  " those policies, none for the others.")
    predictor_options: dict[str, float | int] = Field(default_factory=dict, description="Knobs of the"
                                                      " predictor (noisy: sigma, seed; histogram: quantile,"
                                                      " prior, min_samples; constant: tokens). Default none.")
    front_end: str | None = Field(None, description="API server whose own time per request counts in"
                                  " TTFT: 'vllm' (newest measured version) or 'vllm==0.18.0' (nearest"
                                  " measured version). Default: none, the engine alone.")


class PoolSection(_Section):
    """One pool of a prefill/decode disaggregated cluster: its own GPUs, replicas and engine settings."""

    replicas: int = Field(1, ge=1, description="Engine replicas in the pool. Default 1.")
    gpu: str | None = Field(None, description="GPU kind (`kairos gpus`). Default hardware.gpu.")
    tp: int | None = Field(None, ge=1, description="Tensor-parallel GPUs per engine. Default hardware.tp.")
    engine: dict[str, Any] = Field(default_factory=dict, description="Engine settings of this pool over"
                                   " the engine section's (e.g. max_num_batched_tokens). Default none.")
    router: str | None = Field(None, description="How the pool's replicas are chosen. Default"
                               " cluster.router.")
    router_options: dict[str, float | int] = Field(default_factory=dict, description="Knobs of the"
                                                   " pool's router. Default none.")


class PoolsSection(_Section):
    """A disaggregated cluster's two pools: prompts are prefilled on one, answers decoded on the other."""

    prefill: PoolSection
    decode: PoolSection


class DisaggregationSection(_Section):
    """Which requests prefill remotely, and the link their KV crosses."""

    decider: str = Field("always", description=f"Which requests prefill on the prefill pool, decided on"
                         f" the decode replica's uncached prompt tokens. {_described(DECIDERS)}"
                         " Default always.")
    threshold_tokens: int = Field(256, ge=0, description="prefix_threshold's uncached prompt tokens."
                                  " Default 256.")
    link: str | dict[str, float] = Field("roce-400g", description="The link between the pools: a name"
                                         " (`kairos.hardware.links.json`: nvlink4, ib-ndr, roce-400g,"
                                         " pcie5, eth-100g...) or {bandwidth_gbps: GB/s, latency_us}."
                                         " Default roce-400g.")
    overlap: bool = Field(True, description="Send the KV layer by layer while the prefill runs."
                          " Default on.")


class MigrationSection(_Section):
    """Live migration of running requests between replicas (Llumnix)."""

    policy: str = Field("imbalance", description=f"When to move a request, and where. {_described(MIGRATION_POLICIES)}"
                        " Default imbalance.")
    options: dict[str, float] = Field(default_factory=dict, description="Knobs of the policy (imbalance: gap;"
                                      " kv_pressure: high, low; balanced: threshold). Default none.")
    interval_ms: float = Field(50.0, gt=0, description="How often the policy looks. Default 50.")
    link: str | dict[str, float] = Field("nvlink4", description="The link a replica's incoming copies share:"
                                         " a name or {bandwidth_gbps: GB/s, latency_us}. Default nvlink4.")
    max_stages: int = Field(4, ge=1, description="Live copy stages before the stop-and-copy one. Default 4.")


class LifecycleChange(_Section):
    """One scheduled change of a colocated fleet: start replicas, or drain some."""

    at_s: float = Field(ge=0, description="When, in seconds from the start of the run.")
    start: int | None = Field(None, ge=1, description="Replicas to bring up: starting for startup_s,"
                              " then serving. Spares are built stopped at the run's start.")
    startup_s: float | None = Field(None, ge=0, description="With start: seconds from start to serving"
                                    " (weights, warm-up). Default 0.")
    drain: int | None = Field(None, ge=1, description="Replicas to drain, the last started first: they"
                              " take no new requests, finish what they hold (with cluster.migration it"
                              " moves out), then stop.")

    @model_validator(mode="after")
    def _one_change(self) -> LifecycleChange:
        if (self.start is None) == (self.drain is None):
            raise ValueError("a cluster.lifecycle entry sets exactly one of start or drain")
        if self.startup_s is not None and self.start is None:
            raise ValueError("cluster.lifecycle: startup_s goes with start, not drain")
        return self


class ClusterSection(_Section):
    """Replicas and how requests are routed to them."""

    replicas: int | None = Field(None, ge=1, description="Engine replicas. Default 1 (or"
                                 " hardware.count / tp).")
    router: str = Field("round_robin", description=f"Router. {_described(ROUTERS)} Default round_robin.")
    router_options: dict[str, float | int] = Field(default_factory=dict, description="Knobs of"
                                                   " the router (e.g. cache_threshold). Default none.")
    pools: PoolsSection | None = Field(None, description="Prefill/decode disaggregation: a prefill"
                                       " and a decode pool, each with its own GPUs, replicas and"
                                       " engine settings (replaces replicas). Default none: colocated.")
    disaggregation: DisaggregationSection | None = Field(None, description="With pools: the decider"
                                                         " and the link. Default: always, roce-400g.")
    migration: MigrationSection | None = Field(None, description="Move running requests between replicas"
                                               " (colocated clusters). Default none.")
    lifecycle: list[LifecycleChange] = Field(default_factory=list, description="Replicas started and"
                                             " drained at set times, e.g. [{at_s: 60, start: 2, startup_s:"
                                             " 30}, {at_s: 120, drain: 1}] (colocated clusters). Default"
                                             " none: cluster.replicas serve throughout.")

    def check_lifecycle(self) -> None:
        """Every drain finds the replicas it drains up, and some replica is left to serve at the end."""
        up = self.replicas or 1
        for change in sorted(self.lifecycle, key=lambda c: c.at_s):
            if change.drain is not None and change.drain > up:
                raise ValueError(f"cluster.lifecycle: drain {change.drain} at {change.at_s:g} s, but only {up}"
                                 " replica(s) are up (serving or starting) then")
            up += (change.start or 0) - (change.drain or 0)
        if self.lifecycle and up == 0:
            raise ValueError("cluster.lifecycle drains every replica: requests after the last change would never"
                             " be served; start one again or drain fewer")

    @property
    def total_replicas(self) -> int:
        """Replicas built: those serving at the start plus every one a lifecycle change starts."""
        return (self.replicas or 1) + sum(change.start or 0 for change in self.lifecycle)


class SloSection(_Section):
    """Latency targets; a request counts toward goodput only if it meets all that are set."""

    ttft_ms: float | None = Field(None, gt=0, description="Time to first token. Default none.")
    tpot_ms: float | None = Field(None, gt=0, description="Time per output token. Default none.")
    e2e_ms: float | None = Field(None, gt=0, description="End-to-end latency. Default none.")


class PerfSection(_Section):
    """How step times are predicted."""

    model: str = Field("roofline", description=f"Step-time model. {_described(STEP_TIME_MODELS)}"
                       " Default roofline.")
    roofline: dict[str, float] = Field(default_factory=dict, description="Overrides of roofline"
                                       " parameters (see docs/BENCHMARKS.md). Default none.")
    overheads: dict[str, float] = Field(default_factory=dict, description="Overrides of engine"
                                        " overheads per step (see docs/BENCHMARKS.md). Default none.")
    _shorthand = _name_shorthand("model")


class Scenario(_Section):
    """A complete simulation: model, hardware, engine, cluster, workload, SLOs, perf and seed."""

    model: ModelSection = Field(default_factory=ModelSection)
    hardware: HardwareSection = Field(default_factory=HardwareSection)
    engine: EngineSection = Field(default_factory=EngineSection)
    cluster: ClusterSection = Field(default_factory=ClusterSection)
    workload: WorkloadConfig = Field(default_factory=WorkloadConfig)
    slo: SloSection = Field(default_factory=SloSection)
    perf: PerfSection = Field(default_factory=PerfSection)
    seed: int = Field(0, description="Seed of every random choice. Default 0.")

    @model_validator(mode="after")
    def _replicas_match_count(self) -> Scenario:
        cluster = self.cluster
        if cluster.pools is not None:
            # The built-in scenario's replicas: 1 is merged under every file: only another count conflicts.
            if (cluster.replicas or 1) != 1 or self.hardware.count is not None:
                raise ValueError("cluster.pools sets each pool's replicas: drop cluster.replicas and"
                                 " hardware.count")
            if self.hardware.dp > 1:
                raise ValueError("cluster.pools: data-parallel replicas (hardware.dp) are not modelled"
                                 " in disaggregated pools")
            if cluster.migration is not None:
                raise ValueError("cluster.migration moves requests between colocated replicas: not with"
                                 " cluster.pools yet")
            if cluster.lifecycle:
                raise ValueError("cluster.lifecycle starts and drains colocated replicas: not with"
                                 " cluster.pools yet")
            if cluster.disaggregation is None:
                cluster.disaggregation = DisaggregationSection()
            return self
        if cluster.disaggregation is not None:
            raise ValueError("cluster.disaggregation needs cluster.pools (a prefill and a decode pool)")
        count, per_replica = self.hardware.count, self.hardware.gpus_per_replica
        what = f"tp {self.hardware.tp}" + (f" x dp {self.hardware.dp}" if self.hardware.dp > 1 else "")
        if count is not None:
            if count % per_replica:
                raise ValueError(f"hardware.count {count} is not a multiple of {what}")
            if self.cluster.replicas is None:
                self.cluster.replicas = count // per_replica
            elif self.cluster.replicas * per_replica != count:
                raise ValueError(f"hardware.count {count} != cluster.replicas {self.cluster.replicas}"
                                 f" x {what}")
        if self.cluster.replicas is None:
            self.cluster.replicas = 1
        if cluster.lifecycle and self.hardware.dp > 1:
            raise ValueError("cluster.lifecycle: not with data-parallel replicas (hardware.dp) yet")
        cluster.check_lifecycle()
        return self
