"""Turning a validated scenario into a simulation, running it and building its report."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from kairos.calibration.model import CalibratedModel
from kairos.cluster import Router, make_router, router_knobs
from kairos.cluster.disaggregation import Decider, make_decider
from kairos.cluster.migration import make_migration_policy
from kairos.engine import EngineCore, KVCacheManager, SchedulerConfig
from kairos.engine.policies import policy_predictor
from kairos.errors import KairosError
from kairos.hardware import Link, load_gpu, resolve_link
from kairos.metrics import ItlCollector, RequestRecord, build_report, summarize
from kairos.metrics.timeseries import TimeSeries
from kairos.models import ModelArch, kv_shards, resolve_model
from kairos.perf import kv_cache_blocks
from kairos.perf.front_end import FrontEnd, load_front_end
from kairos.perf.parallel import Parallelism
from kairos.predict import OutputPredictor
from kairos.scenario.schema import ClusterSection, EngineSection, Scenario
from kairos.scenario.step_models import ResolvedPerf, load_calibrated, make_step_time_model
from kairos.sim.executor import SimExecutor
from kairos.sim.explain import StepSampler, explain_steps
from kairos.sim.lockstep import LockstepCores
from kairos.sim.lifecycle import FleetChange
from kairos.sim.replica import PrefixHasher, ReplicaState, SimReplica
from kairos.sim.disaggregated import DisaggregatedSimulation
from kairos.sim.migration import MigratingSimulation
from kairos.sim.recorder import TimeSeriesRecorder
from kairos.sim.runner import ProgressFn, Simulation
from kairos.workload import RequestSpec, build_workload
from kairos.workload.spec import SLO


@dataclass(slots=True)
class ScenarioRun:
    """A finished run: the report dict, the per-request records behind it and, when recorded, each
    replica's time series."""

    report: dict
    records: list[RequestRecord]
    timeseries: TimeSeries | None = None


@dataclass(frozen=True, slots=True)
class Deployment:
    """What a scenario resolves to before any request runs."""

    model: ModelArch
    device: str  # catalog GPU name, or the device a calibration profile measured
    parallel: Parallelism
    replicas: int
    kv_blocks: int  # per engine (per data-parallel rank)
    max_model_len: int
    perf: ResolvedPerf
    front_end: FrontEnd | None = None  # the API server's time per request, where modelled
    notes: tuple[str, ...] = ()  # how the model name was resolved, and the like

    @property
    def tp(self) -> int:
        return self.parallel.tp

    @property
    def lockstep(self) -> bool:
        """Whether each replica's data-parallel ranks step together (an MoE model's do)."""
        return self.parallel.dp > 1 and self.model.is_moe

    def describe(self) -> dict:
        """The deployment section of report.json: what ran."""
        return {
            "model": self.model.name, "gpu": self.device, **self.parallel.describe(),
            "gpus_per_replica": self.parallel.gpus, "replicas": self.replicas,
            "kv_blocks_per_replica": self.kv_blocks * self.parallel.dp, "kv_blocks_per_engine": self.kv_blocks,
            "weights_dtype": self.model.weights_dtype, "kv_cache_dtype": self.model.kv_cache_dtype,
            "max_model_len": self.max_model_len, "perf": self.perf.used,
            "front_end": None if self.front_end is None else self.front_end.name, "notes": list(self.notes),
        }


def resolve_deployment(scenario: Scenario, calibrated: CalibratedModel | None = None) -> Deployment:
    """Look up model and GPU, check TP, size each replica's KV cache, build the step-time model.

    `calibrated` is a profile already in memory, for a scenario whose perf model is
    a bare `calibrated` (else the profile is read from the `calibrated:PATH` file).
    """
    hw = scenario.hardware
    tp = hw.tp
    parallel = Parallelism(tp, hw.dp, hw.ep)
    eng = scenario.engine
    notes: list[str] = []
    calibrated = calibrated or load_calibrated(scenario.perf.model)
    if calibrated is not None and scenario.model.name == calibrated.profile["model"]:
        # The measured engine itself (e.g. a `kairos serve` preset the catalog does not
        # know): its architecture comes from the profile, and with no GPU to size the KV
        # cache from, the served engine's block count must be given.
        profile = calibrated.profile
        model = calibrated.arch()
        if not eng.num_gpu_blocks:
            raise KairosError("simulating a calibrated engine needs its KV block count: set "
                              "engine.num_gpu_blocks (`kairos validate` reads it from meta.json)")
        gpu, device, blocks = None, str(profile.get("device_name") or profile.get("device")), eng.num_gpu_blocks
    else:
        resolved = resolve_model(scenario.model.name)
        if resolved.note:
            notes.append(resolved.note)
        model = resolved.arch.with_precision(scenario.model.weights_dtype, scenario.model.kv_cache_dtype)
        gpu = load_gpu(hw.gpu)
        model.check_tp(tp)
        if parallel.ep and not model.is_moe:
            raise KairosError(f"hardware.ep: {model.name} is a dense model, it has no experts to split")
        device = gpu.name
        blocks = eng.num_gpu_blocks or kv_cache_blocks(
            model, gpu, tp, eng.block_size, eng.gpu_memory_utilization,
            eng.max_num_batched_tokens, eng.max_num_seqs, parallel=parallel,
        )
    max_len = scenario.model.max_model_len or model.max_position_embeddings
    perf = make_step_time_model(scenario.perf.model, model, gpu, tp, scenario.perf.roofline,
                                scenario.perf.overheads, calibrated, parallel=parallel)
    front_end = None
    if eng.front_end is not None:
        if calibrated is not None:
            raise KairosError("engine.front_end: a calibrated profile carries the front-end time it measured")
        front_end, note = load_front_end(eng.front_end)
        if note:
            notes.append(note)
    return Deployment(model, device, parallel, scenario.cluster.replicas or 1, blocks, max_len, perf,
                      front_end, (*notes, *perf.notes))


@dataclass(frozen=True, slots=True)
class PoolDeployments:
    """A prefill/decode disaggregated cluster resolved: each pool's deployment, the link between them,
    the decider and whether KV is sent layer by layer during the prefill."""

    prefill: Deployment
    decode: Deployment
    link: Link
    decider: Decider
    overlap: bool
    prefill_scenario: Scenario  # each pool's own scenario (pool_scenario)
    decode_scenario: Scenario

    @property
    def max_model_len(self) -> int:
        return min(self.prefill.max_model_len, self.decode.max_model_len)

    def describe(self) -> dict:
        """The deployment section of report.json for a disaggregated cluster."""
        return {"prefill": self.prefill.describe(), "decode": self.decode.describe(),
                "link": {"name": self.link.name, "bandwidth_gb_s": self.link.bandwidth / 1e9,
                         "latency_us": self.link.latency_s * 1e6},
                "decider": self.decider.name, "overlap": self.overlap}


def pool_scenario(scenario: Scenario, name: str) -> Scenario:
    """The scenario of one pool of a disaggregated cluster: its GPU, TP, replicas, engine and router."""
    pools = scenario.cluster.pools
    assert pools is not None
    pool = getattr(pools, name)
    engine = EngineSection.model_validate({**scenario.engine.model_dump(), **pool.engine})
    hardware = scenario.hardware.model_copy(update={"gpu": pool.gpu or scenario.hardware.gpu,
                                                    "tp": pool.tp or scenario.hardware.tp})
    cluster = ClusterSection(replicas=pool.replicas, router=pool.router or scenario.cluster.router,
                             router_options=pool.router_options or scenario.cluster.router_options)
    return scenario.model_copy(update={"hardware": hardware, "engine": engine, "cluster": cluster})


def resolve_pools(scenario: Scenario) -> PoolDeployments | None:
    """Both pools' deployments where the scenario disaggregates (cluster.pools), else None."""
    pools, options = scenario.cluster.pools, scenario.cluster.disaggregation
    if pools is None or options is None:
        return None
    if load_calibrated(scenario.perf.model) is not None:
        raise KairosError("cluster.pools: a calibrated profile measured one engine; disaggregated pools"
                          " need a step-time model per pool's GPU (roofline, kernels, aiconfigurator)")
    prefill, decode = (pool_scenario(scenario, name) for name in ("prefill", "decode"))
    if prefill.engine.block_size != decode.engine.block_size:
        raise KairosError(f"cluster.pools: the pools' engine.block_size differ ({prefill.engine.block_size},"
                          f" {decode.engine.block_size}): KV moves block by block")
    return PoolDeployments(resolve_deployment(prefill), resolve_deployment(decode), resolve_link(options.link),
                           make_decider(options.decider, options.threshold_tokens), options.overlap,
                           prefill, decode)


def build_simulation(scenario: Scenario, deployment: Deployment | PoolDeployments, specs: list[RequestSpec], *,
                     fast_decode: bool = True, progress: ProgressFn | None = None,
                     check_invariants: bool = False, explain: StepSampler | None = None) -> Simulation:
    """Wire replicas (engine core + simulated executor) behind the scenario's router."""
    if isinstance(deployment, PoolDeployments):
        if explain is not None:
            raise KairosError("--explain samples one deployment's steps: not for disaggregated pools yet")
        return _build_disaggregated(scenario, deployment, specs, fast_decode=fast_decode, progress=progress,
                                    check_invariants=check_invariants)
    eng = scenario.engine
    step_model = deployment.perf.model
    itl = ItlCollector()
    hasher = PrefixHasher(eng.block_size)
    engine = _engine_maker(eng, deployment.kv_blocks, itl, check_invariants, _predictor(eng))
    dp = deployment.parallel.dp
    if deployment.lockstep:
        cores: list = [LockstepCores([engine() for _ in range(dp)]) for _ in range(deployment.replicas)]
    else:
        # A dense model's data-parallel ranks are independent engines: the router spreads
        # requests over all of them, as vLLM's internal load balancer does over its ranks.
        cores = [engine() for _ in range(deployment.replicas * dp)]
    # The spares that lifecycle changes start are built stopped (the schema allows them with dp 1 only).
    cores += [engine() for _ in range(scenario.cluster.total_replicas - deployment.replicas)]
    replicas = [SimReplica(i, core, SimExecutor(step_model), hasher,
                           ReplicaState.SERVING if i < deployment.replicas * dp else ReplicaState.STOPPED)
                for i, core in enumerate(cores)]
    lifecycle = [FleetChange(c.at_s, c.start or 0, c.startup_s or 0.0, c.drain or 0)
                 for c in scenario.cluster.lifecycle]
    router = _make_router(scenario, hasher, deployment.kv_blocks)
    request_latency = _request_latency(deployment)
    migration = scenario.cluster.migration
    if migration is not None:
        if deployment.lockstep or explain is not None:
            raise KairosError("cluster.migration: not with data-parallel MoE replicas or --explain yet")
        model, tp = deployment.model, deployment.tp
        return MigratingSimulation(
            specs, replicas, router, policy=make_migration_policy(migration.policy, **migration.options),
            link=resolve_link(migration.link), kv_bytes=lambda tokens: kv_shards(model, tokens, tp, tp).bytes_per_link,
            interval_s=migration.interval_ms / 1e3, max_stages=migration.max_stages,
            max_model_len=deployment.max_model_len, itl=itl, fast_decode=fast_decode, progress=progress,
            request_latency=request_latency, concurrency=scenario.workload.concurrency, lifecycle=lifecycle)
    return Simulation(specs, replicas, router, max_model_len=deployment.max_model_len, itl=itl,
                      fast_decode=fast_decode, progress=progress, explain=explain,
                      request_latency=request_latency, concurrency=scenario.workload.concurrency,
                      lifecycle=lifecycle)


def _build_disaggregated(scenario: Scenario, pools: PoolDeployments, specs: list[RequestSpec], *,
                         fast_decode: bool, progress: ProgressFn | None,
                         check_invariants: bool) -> DisaggregatedSimulation:
    """A prefill and a decode pool of replicas, each pool with its own engines, step model and router."""
    itl = ItlCollector()
    hasher = PrefixHasher(pools.decode_scenario.engine.block_size)  # the pools share one block size
    replicas: dict[str, list[SimReplica]] = {}
    routers = {}
    # One predictor learns from every finished request, as a cluster-wide service would.
    predictor = _predictor(pools.decode_scenario.engine)
    for name, pool, derived in (("prefill", pools.prefill, pools.prefill_scenario),
                                ("decode", pools.decode, pools.decode_scenario)):
        engine = _engine_maker(derived.engine, pool.kv_blocks, itl, check_invariants, predictor)
        first = sum(len(r) for r in replicas.values())
        replicas[name] = [SimReplica(first + i, engine(), SimExecutor(pool.perf.model), hasher)
                          for i in range(pool.replicas)]
        routers[name] = _make_router(derived, hasher, pool.kv_blocks)
    model, tp_prefill, tp_decode = pools.decode.model, pools.prefill.tp, pools.decode.tp
    return DisaggregatedSimulation(
        specs, replicas["prefill"], replicas["decode"], routers["prefill"], routers["decode"],
        decider=pools.decider, link=pools.link, overlap=pools.overlap, num_layers=model.num_layers,
        kv_bytes=lambda tokens: kv_shards(model, tokens, tp_prefill, tp_decode).bytes_per_link,
        max_model_len=pools.max_model_len, itl=itl, fast_decode=fast_decode, progress=progress,
        request_latency=_request_latency(pools.decode),
        concurrency=scenario.workload.concurrency)


def _predictor(eng: EngineSection) -> OutputPredictor | None:
    """The engine section's output-length predictor (kairos.engine.policies.policy_predictor's rule)."""
    return policy_predictor(eng.policy, eng.predictor, eng.predictor_options)


def _engine_maker(eng: EngineSection, kv_blocks: int, itl: ItlCollector, check_invariants: bool,
                  predictor: OutputPredictor | None) -> Callable[[], EngineCore]:
    """New engine cores with these settings and `kv_blocks` KV blocks each, sharing `itl` and `predictor`.

    The first core is built now, so that a policy's unknown knob is an error before the run.
    """
    config = SchedulerConfig(eng.max_num_seqs, eng.max_num_batched_tokens, eng.enable_chunked_prefill, eng.policy,
                             policy_options=tuple(sorted(eng.policy_options.items())))

    def make() -> EngineCore:
        return EngineCore(config, KVCacheManager(kv_blocks, eng.block_size, eng.enable_prefix_caching),
                          itl=itl, check_invariants=check_invariants, predictor=predictor)

    first = [make()]
    return lambda: first.pop() if first else make()


def _request_latency(deployment: Deployment) -> Callable[[int], float] | None:
    """The front end's time per request; a profile measured through a server's API knows its own."""
    if deployment.front_end is not None:
        return deployment.front_end.latency_s
    return deployment.perf.model.front_end_latency()


def _make_router(scenario: Scenario, hasher: PrefixHasher, kv_blocks: int) -> Router:
    """The scenario's router; cache-aware ones hash prompts exactly as the engines' prefix caches do."""
    knobs: dict = dict(scenario.cluster.router_options)
    if "prefix_block_keys" in router_knobs(scenario.cluster.router):
        knobs.update(prefix_block_keys=hasher.hashes, block_size=scenario.engine.block_size)
        knobs.setdefault("max_tracked_blocks", kv_blocks)
    return make_router(scenario.cluster.router, seed=scenario.seed, **knobs)


def run_scenario(scenario: Scenario, *, progress: ProgressFn | None = None,
                 warn: Callable[[str], None] | None = None, fast_decode: bool = True,
                 check_invariants: bool = False, explain: bool = False, timeseries: bool = False,
                 stop_when: Callable[[RequestRecord, int], bool] | None = None) -> ScenarioRun:
    """Build the workload and the cluster, simulate, and summarise into a report.

    `stop_when` sees each request as it ends (and the run's request count); True ends the run there, its report
    covering what ran (requests left unfinished).

    With `explain`, the report gains an `explain` section: a sample of steps with
    their predicted time split by operator. With `timeseries`, the run also samples
    each replica's state (`TimeSeriesRecorder`); the report stays the same.
    """
    started = time.perf_counter()
    deployment: Deployment | PoolDeployments = resolve_pools(scenario) or resolve_deployment(scenario)
    specs = build_workload(scenario.workload, scenario.seed, warn=warn)
    sampler = StepSampler() if explain else None
    sim = build_simulation(scenario, deployment, specs, fast_decode=fast_decode,
                           progress=progress, check_invariants=check_invariants, explain=sampler)
    sim.stop_when = stop_when
    if timeseries:
        sim.recorder = TimeSeriesRecorder()
    result = sim.run()
    slo = SLO(scenario.slo.ttft_ms, scenario.slo.tpot_ms, scenario.slo.e2e_ms)
    summary = summarize(result.records, result.itl, slo, result.prefix_cache_hit_rate)
    extra = {"deployment": deployment.describe()}
    if result.disaggregation is not None:
        extra["disaggregation"] = result.disaggregation
    if result.migration is not None:
        extra["migration"] = result.migration
    if result.prediction is not None:
        extra["prediction"] = result.prediction
    if result.lifecycle is not None:
        gpus = deployment.parallel.gpus if isinstance(deployment, Deployment) else 1
        extra["lifecycle"] = {**result.lifecycle, "gpu_s": result.lifecycle["replica_s"]["up"] * gpus}
    if sampler is not None:
        extra["explain"] = explain_steps(sampler, deployment.perf.model)
    # Through JSON text: pydantic serialises infinite rates as "Infinity" there.
    report = build_report(json.loads(scenario.model_dump_json()), summary, result.replicas,
                          time.perf_counter() - started, extra=extra)
    return ScenarioRun(report, result.records, result.timeseries)
