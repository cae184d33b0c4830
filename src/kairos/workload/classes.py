"""Request classes and tenants: named SLO classes and senders mixed into any workload by share.

A class sets a request's `slo_class`, `slo`, `priority` and `deadline_s`; a
tenant sets its `tenant`. Both are drawn per client unit (a request, or a whole
multi-turn session: a conversation keeps its class and sender) from streams of
their own, so adding classes or tenants leaves arrivals and lengths unchanged,
and traces get them by the same draw as synthetic workloads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kairos.workload.lengths import LengthDist, fixed_if_int
from kairos.workload.spec import SLO, RequestSpec

# Streams spawned from default_rng(seed) after the synthetic generator's five
# (arrivals, inputs, outputs, prefixes, sessions): spawning more children leaves
# the first five as they were, so workloads without classes do not change.
CLASS_STREAM, TENANT_STREAM, CLASS_LENGTH_STREAM = 5, 6, 7
NUM_STREAMS = 8


class SloTargets(BaseModel):
    """A class's latency targets in milliseconds; unset targets fall back to the scenario's `slo`."""

    model_config = ConfigDict(extra="forbid")

    ttft_ms: float | None = Field(None, gt=0, allow_inf_nan=False, description="Time to first token.")
    tpot_ms: float | None = Field(None, gt=0, allow_inf_nan=False, description="Time per output token.")
    e2e_ms: float | None = Field(None, gt=0, allow_inf_nan=False, description="End-to-end latency.")


class RequestClass(BaseModel):
    """One class of requests (e.g. interactive or batch) and its share of the workload."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="The class's name (`slo_class` of its requests).")
    share: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="Relative weight: shares are normalised, so they need not sum to 1. Default 1.",
    )
    slo: SloTargets | None = Field(None, description="Latency targets of the class. Default none.")
    priority: int = Field(0, description="Priority of its requests (lower served first). Default 0.")
    deadline_s: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Seconds after arrival by which a request should finish. Default none.",
    )
    input_len: LengthDist | None = Field(
        None,
        description="Synthetic only: the class's user-message length, instead of the workload's"
        " (an int means fixed). Default the workload's.",
    )
    output_len: LengthDist | None = Field(
        None,
        description="Synthetic only: the class's answer length, instead of the workload's."
        " Default the workload's.",
    )

    _int_is_fixed = field_validator("input_len", "output_len", mode="before")(fixed_if_int)

    def apply(self, spec: RequestSpec) -> RequestSpec:
        """`spec` in this class (replacing whatever class fields its source gave it)."""
        slo = None if self.slo is None else SLO(self.slo.ttft_ms, self.slo.tpot_ms, self.slo.e2e_ms)
        return dataclasses.replace(
            spec, slo_class=self.name, slo=slo, priority=self.priority, deadline_s=self.deadline_s
        )


class TenantConfig(BaseModel):
    """Senders of the requests, named `t0`, `t1`, ...: each client unit picks one by share."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, description="Number of tenants.")
    shares: list[float] | None = Field(
        None,
        description="One positive weight per tenant, normalised (need not sum to 1)."
        " Default equal shares.",
    )

    @model_validator(mode="after")
    def _one_share_each(self) -> TenantConfig:
        if self.shares is not None:
            if len(self.shares) != self.count:
                raise ValueError(f"tenants.shares has {len(self.shares)} entries for {self.count} tenants")
            if not all(0 < share < float("inf") for share in self.shares):
                raise ValueError("tenants.shares must all be finite numbers > 0")
        return self

    def names(self) -> list[str]:
        return [f"t{i}" for i in range(self.count)]


def check_unique_names(classes: Sequence[RequestClass]) -> None:
    """Raise ValueError (for pydantic) when two classes share a name."""
    names = [c.name for c in classes]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"workload.classes: duplicate class name {duplicates[0]!r}")


def pick_by_share(shares: Sequence[float], count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` indices into `shares`, each drawn with probability share / sum.

    One uniform draw per pick, so the first k picks of a longer call are the
    picks of a call for k: the generator and the pass over a built workload agree.
    """
    weights = np.asarray(shares, dtype=np.float64)
    cdf = np.cumsum(weights / weights.sum())
    picks = np.searchsorted(cdf, rng.random(count), side="right")
    return np.minimum(picks, len(weights) - 1)  # a draw at the rounded top of the cdf


def class_streams(seed: int) -> list[np.random.Generator]:
    """The seed's streams, the generator's five first (see CLASS_STREAM)."""
    return np.random.default_rng(seed).spawn(NUM_STREAMS)


def unit_indices(specs: Sequence[RequestSpec]) -> list[int]:
    """For each spec, the index of its client unit: its session, else its `after` chain, else itself.

    Units are numbered in order of first appearance.
    """
    units: dict[str, int] = {}
    of_request: dict[str | None, int] = {}
    out = []
    for spec in specs:
        if spec.session_id is None and spec.after in of_request:
            unit = of_request[spec.after]
        else:
            key = f"r:{spec.request_id}" if spec.session_id is None else f"s:{spec.session_id}"
            unit = units.setdefault(key, len(units))
        of_request[spec.request_id] = unit
        out.append(unit)
    return out


def assign_classes(
    specs: list[RequestSpec],
    classes: Sequence[RequestClass],
    tenants: TenantConfig | None,
    seed: int,
) -> list[RequestSpec]:
    """`specs` with a class and a tenant per client unit (unchanged when neither is set)."""
    if not classes and tenants is None:
        return specs
    units = unit_indices(specs)
    count = max(units, default=-1) + 1
    streams = class_streams(seed)
    out = specs
    if classes:
        picks = pick_by_share([c.share for c in classes], count, streams[CLASS_STREAM]).tolist()
        out = [classes[picks[u]].apply(spec) for spec, u in zip(out, units)]
    if tenants is not None:
        names = tenants.names()
        shares = tenants.shares or [1.0] * tenants.count
        picks = pick_by_share(shares, count, streams[TENANT_STREAM]).tolist()
        out = [dataclasses.replace(spec, tenant=names[picks[u]]) for spec, u in zip(out, units)]
    return out
