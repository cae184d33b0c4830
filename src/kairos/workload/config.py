"""The `workload` section of a scenario (pydantic) and the function that builds it.

With no settings it is a synthetic chat workload: 600 requests, Poisson arrivals
at 6 req/s, lognormal input (median 700 tokens, clipped to [16, 8192]) and output
(median 200, clipped to [4, 2048]) lengths, and 4 shared system prompts of 256
tokens. `num_requests`, `rate`, `concurrency` and `time_scale` are plain fields so
the CLI can override them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kairos.workload.arrivals import ArrivalProcess
from kairos.workload.classes import RequestClass, TenantConfig, assign_classes, check_unique_names
from kairos.workload.lengths import (
    CountDist,
    LengthDist,
    LognormalLength,
    UniformLength,
    fixed_if_int,
)
from kairos.workload.spec import RequestSpec
from kairos.workload.synthetic import SYNTHETIC_DEFAULT_REQUESTS, generate_synthetic
from kairos.workload.traces import TraceFormat, load_trace


class PrefixConfig(BaseModel):
    """Shared system prompts: each request (each session) starts with one of `num` prefixes."""

    model_config = ConfigDict(extra="forbid")

    num: int = Field(4, ge=1, description="Number of distinct system prompts. Default 4.")
    length: int = Field(256, ge=1, description="Tokens in each system prompt. Default 256.")
    popularity: Literal["uniform", "zipf"] = Field(
        "uniform",
        description="How requests pick a prompt: uniform, or zipf (prompt i, 1-based, is"
        " picked with probability proportional to 1 / i**zipf_exponent). Default uniform.",
    )
    zipf_exponent: float = Field(
        1.0, gt=0, allow_inf_nan=False, description="Exponent of the zipf popularity. Default 1.0."
    )


class SessionConfig(BaseModel):
    """Closed-loop multi-turn sessions: each turn resends the whole conversation so far."""

    model_config = ConfigDict(extra="forbid")

    turns: CountDist = Field(
        default_factory=lambda: UniformLength(min=2, max=6),
        description="Turns per session: fixed, uniform or lognormal (an int means fixed)."
        " Default uniform 2..6.",
    )
    think_time_s: float = Field(
        5.0,
        ge=0,
        allow_inf_nan=False,
        description="Mean of the exponential pause between an answer and the next turn,"
        " in seconds. Default 5.",
    )

    _int_is_fixed = field_validator("turns", mode="before")(fixed_if_int)


class WorkloadConfig(BaseModel):
    """What requests arrive: a synthetic workload (the default) or a replayed trace."""

    # rate may be infinite; "strings" writes it as "Infinity", which loads back.
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")

    kind: Literal["synthetic", "trace"] = Field(
        "synthetic", description="synthetic (generated from the fields below) or trace (`path`)."
    )
    num_requests: int | None = Field(
        None,
        ge=1,
        description=f"Number of requests. Default: {SYNTHETIC_DEFAULT_REQUESTS} for synthetic,"
        " every row for a trace (else the first N arrivals).",
    )
    # Synthetic workloads.
    arrival: ArrivalProcess = Field(
        "poisson",
        description="Arrival process of requests (of sessions, when sessions are on):"
        " poisson, gamma (burstiness `cv`) or constant. Default poisson.",
    )
    rate: float = Field(
        6.0,
        gt=0,
        description="Mean arrivals per second (sessions per second with sessions on);"
        " .inf sends everything at t=0. Default 6.",
    )
    cv: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="Coefficient of variation of gamma inter-arrival gaps: 1 is Poisson,"
        " above 1 burstier. Default 1.",
    )
    input_len: LengthDist = Field(
        default_factory=lambda: LognormalLength(median=700, sigma=1.0, min=16, max=8192),
        description="Tokens of each user message, system prompt not included (an int means"
        " fixed). Default lognormal, median 700, sigma 1.0, clipped to [16, 8192].",
    )
    output_len: LengthDist = Field(
        default_factory=lambda: LognormalLength(median=200, sigma=0.8, min=4, max=2048),
        description="Tokens of each answer (an int means fixed). Default lognormal,"
        " median 200, sigma 0.8, clipped to [4, 2048].",
    )
    prefixes: PrefixConfig | None = Field(
        default_factory=PrefixConfig,
        description="Shared system prompts, or null for none. Default 4 prompts of 256 tokens.",
    )
    sessions: SessionConfig | None = Field(
        None, description="Multi-turn sessions, or null for single requests. Default null."
    )
    concurrency: int | None = Field(
        None,
        ge=1,
        description="Closed loop, as `vllm bench serve --max-concurrency`: at most this many"
        " requests in flight. A request is sent at its arrival time or, when every slot is"
        " busy, as soon as one frees (a request ends: finished, failed or rejected); its"
        " TTFT counts from the send. With rate .inf the first N go at t=0 and each end sends"
        " the next. A session's follow-up turn also waits for a slot; none is held during"
        " think time. Synthetic and trace workloads alike. Default null: open loop.",
    )
    classes: list[RequestClass] = Field(
        default_factory=list,
        description="Request classes mixed by share, e.g. [{name: interactive, share: 0.7, slo:"
        " {ttft_ms: 500, tpot_ms: 50}}, {name: batch, share: 0.3, priority: 1, deadline_s: 600}]."
        " Each request (each session) gets one; it sets the request's slo_class, slo, priority"
        " and deadline_s, replacing a trace's own. Synthetic and trace workloads alike."
        " Default none.",
    )
    tenants: TenantConfig | None = Field(
        None,
        description="Tenants t0..t{count-1} sending the requests, e.g. {count: 4, shares: [0.7,"
        " 0.1, 0.1, 0.1]}: each request (each session) gets one by share, replacing a trace's"
        " own. Default null: requests keep their source's tenant (none for synthetic).",
    )
    # Traces.
    path: str | None = Field(None, description="Trace file to replay (kind: trace).")
    format: TraceFormat = Field(
        "auto",
        description="Trace format: azure, mooncake, burstgpt or kairos. Default auto"
        " (detected from the file).",
    )
    time_scale: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="Replay speed-up: arrival times are divided by it (2 = twice as fast)."
        " Default 1.",
    )
    burstgpt_model: str | None = Field(
        None, description="BurstGPT only: keep rows of this model (ChatGPT, GPT-4). Default all."
    )
    burstgpt_log_type: str | None = Field(
        None,
        description="BurstGPT only: keep rows of this log type (Conversation log, API log)."
        " Default all.",
    )

    _int_is_fixed = field_validator("input_len", "output_len", mode="before")(fixed_if_int)

    @model_validator(mode="after")
    def _path_matches_kind(self) -> WorkloadConfig:
        if self.kind == "trace" and not self.path:
            raise ValueError("a trace workload needs `path`")
        if self.kind == "synthetic" and self.path:
            raise ValueError("`path` is set but kind is synthetic; set kind: trace to replay it")
        check_unique_names(self.classes)
        if self.kind == "trace":
            for cls in self.classes:
                if cls.input_len is not None or cls.output_len is not None:
                    raise ValueError(
                        f"class {cls.name!r} sets input_len/output_len, which only synthetic"
                        " workloads have: a trace keeps its own lengths"
                    )
        return self


def build_workload(
    cfg: WorkloadConfig, seed: int, *, warn: Callable[[str], None] | None = None
) -> list[RequestSpec]:
    """The requests `cfg` describes; `seed` drives synthetic randomness.

    Trace rows that cannot be replayed (e.g. BurstGPT failures) are left out and
    reported through `warn`, one line per reason, for the caller to show. Classes
    and tenants are assigned last, to whatever the source gave.
    """
    if cfg.kind == "synthetic":
        return assign_classes(generate_synthetic(cfg, seed), cfg.classes, cfg.tenants, seed)
    load = load_trace(
        cfg.path,
        cfg.format,
        time_scale=cfg.time_scale,
        num_requests=cfg.num_requests,
        burstgpt_model=cfg.burstgpt_model,
        burstgpt_log_type=cfg.burstgpt_log_type,
    )
    if warn is not None:
        for message in load.warnings:
            warn(message)
    return assign_classes(load.requests, cfg.classes, cfg.tenants, seed)
