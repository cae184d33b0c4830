"""The highest request rate a deployment sustains within an SLO: bracket, then bisect.

The rate is the scenario's own knob: `workload.rate` for a synthetic workload,
`workload.time_scale` for a trace (its arrivals replayed that many times faster).
Each probe is one simulation, stopped as soon as its verdict is certain
(`SloTarget.fail_fast`), so overloaded probes cost little.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kairos.errors import KairosError
from kairos.plan.slo import SloTarget
from kairos.scenario.run import run_scenario
from kairos.scenario.schema import Scenario

# Bracketing gives up after this many doublings or halvings of the starting rate.
_MAX_BRACKET_STEPS = 12
# Below this many requests in the system on average, a request mostly runs alone: a deployment that
# misses the SLO there misses it at any rate.
_ALONE = 0.5


@dataclass(frozen=True, slots=True)
class Probe:
    """One simulation of the search: the knob's value, the verdict and what was observed."""

    knob: float
    meets: bool
    observed_ms: dict[str, float | None]
    throughput_rps: float
    incomplete: bool  # some request was rejected, or the run stopped once its verdict was certain
    wall_s: float
    offered_rps: float = 0.0  # requests per second arriving over the run's arrival span
    offered_output_tps: float = 0.0  # their output tokens per second
    tpot_mean_ms: float | None = None
    concurrency: float = 0.0  # mean requests in the system (Little's law: offered rate x mean E2E)


@dataclass(slots=True)
class Capacity:
    """The search's answer: the highest knob value that met the SLO and the lowest that did not."""

    knob_name: str  # workload.rate or workload.time_scale
    best: Probe | None  # highest meeting probe (None: even the lowest tried failed)
    first_failing: Probe | None  # lowest failing probe above it (None: never failed)
    probes: list[Probe] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.best.knob if self.best is not None else 0.0


def rate_knob(scenario: Scenario) -> tuple[str, float]:
    """The scenario's load knob and its current value."""
    workload = scenario.workload
    if workload.concurrency is not None:
        raise KairosError("capacity is searched over arrival rates: drop workload.concurrency (a closed loop)")
    if workload.kind == "trace":
        return "workload.time_scale", workload.time_scale
    return "workload.rate", workload.rate


def with_knob(scenario: Scenario, knob_name: str, value: float) -> Scenario:
    field_name = knob_name.split(".", 1)[1]
    return scenario.model_copy(update={"workload": scenario.workload.model_copy(update={field_name: value})})


def probe(scenario: Scenario, target: SloTarget, knob_name: str, value: float) -> Probe:
    """Simulate the scenario at `value` of its load knob and judge it."""
    started = time.perf_counter()
    run = run_scenario(with_knob(scenario, knob_name, value), stop_when=target.fail_fast())
    records = run.records
    summary = run.report["summary"]
    span = max(r.arrival_s for r in records) - min(r.arrival_s for r in records) if records else 0.0
    offered = (len(records) / span, sum(r.output_tokens for r in records) / span) if span > 0 else (0.0, 0.0)
    observed = target.observed_ms(records)
    return Probe(value, target.meets(records, observed), observed, summary["throughput"]["requests_per_s"],
                 not all(r.finished for r in records), time.perf_counter() - started, *offered,
                 summary["tpot_ms"]["mean"] or None, offered[0] * summary["e2e_ms"]["mean"] / 1e3)


def find_capacity(scenario: Scenario, target: SloTarget, *, tolerance: float = 0.02,
                  on_probe: Callable[[Probe], None] | None = None) -> Capacity:
    """Bracket the knob by doubling or halving from the scenario's value, then bisect (geometrically)
    until the highest meeting and lowest failing values are within `tolerance` of each other."""
    if not 0 < tolerance < 1:
        raise KairosError(f"tolerance must be in (0, 1), got {tolerance:g}")
    knob_name, start = rate_knob(scenario)
    result = Capacity(knob_name, None, None)

    def run(value: float) -> Probe:
        p = probe(scenario, target, knob_name, value)
        result.probes.append(p)
        if on_probe is not None:
            on_probe(p)
        return p

    first = run(start)
    if first.meets:
        result.best = first
        for _ in range(_MAX_BRACKET_STEPS):
            p = run(result.best.knob * 2)
            if not p.meets:
                result.first_failing = p
                break
            result.best = p
        else:
            return result  # meets even at 2^12 times the start: report the highest tried
    else:
        result.first_failing = first
        for _ in range(_MAX_BRACKET_STEPS):
            if result.first_failing.concurrency < _ALONE:
                return result  # requests barely overlap and still miss: no lower rate will meet it
            p = run(result.first_failing.knob / 2)
            if p.meets:
                result.best = p
                break
            result.first_failing = p
        else:
            return result
    while result.first_failing.knob / result.best.knob - 1 > tolerance:
        p = run(math.sqrt(result.best.knob * result.first_failing.knob))
        if p.meets:
            result.best = p
        else:
            result.first_failing = p
    return result

