"""The cheapest deployment that meets an SLO at a target rate, over GPU kinds and tensor parallelism.

For each (GPU, TP) candidate: one replica's capacity (kairos.plan.capacity), then
the replica count it implies, checked by simulating the whole fleet at the
target rate and stepped up (or down) until it is the fewest that meets the SLO.
Candidates run in parallel processes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

from kairos.errors import KairosError
from kairos.plan.capacity import Probe, find_capacity, probe, rate_knob, with_knob
from kairos.plan.slo import SloTarget
from kairos.scenario.schema import Scenario
from kairos.workload import build_workload

# A fleet whose first replica count fails is grown at most this many times before giving up.
_MAX_GROW_STEPS = 8


@dataclass(frozen=True, slots=True)
class Sized:
    """One candidate's answer: the fewest replicas meeting the SLO at the target, and what that costs."""

    gpu: str
    tp: int
    replicas: int | None  # None: none up to max_replicas met it (see `reason`)
    gpus: int | None
    cost_per_hour: float | None  # with a price table; else None
    replica_capacity: float  # the load knob one replica sustains
    at_target: Probe | None  # the fleet's probe at the target rate
    reason: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def knob_for_rate(scenario: Scenario, rate_rps: float) -> float:
    """The load knob's value that makes the workload arrive at `rate_rps` requests per second."""
    knob_name, value = rate_knob(scenario)
    if knob_name == "workload.rate":
        return rate_rps
    requests = build_workload(scenario.workload, scenario.seed)
    span = max(r.arrival_s for r in requests) - min(r.arrival_s for r in requests)
    if span <= 0:
        raise KairosError("the trace's requests all arrive at once: it has no rate to scale")
    return value * rate_rps * span / len(requests)


def with_layout(scenario: Scenario, gpu: str, tp: int, replicas: int) -> Scenario:
    """The scenario on `replicas` replicas of `gpu` x `tp`."""
    return scenario.model_copy(update={
        "hardware": scenario.hardware.model_copy(update={"gpu": gpu, "tp": tp}),
        "cluster": scenario.cluster.model_copy(update={"replicas": replicas}),
    })


def size_candidate(scenario: Scenario, target: SloTarget, gpu: str, tp: int, target_knob: float,
                   max_replicas: int, tolerance: float, prices: dict[str, float] | None) -> Sized:
    """The fewest replicas of `gpu` x `tp` that meet `target` at `target_knob`."""
    knob_name, _ = rate_knob(scenario)
    base = with_layout(scenario, gpu, tp, 1)
    try:
        one = find_capacity(with_knob(base, knob_name, target_knob), target, tolerance=tolerance)
    except KairosError as e:  # e.g. the model does not fit this GPU at this TP
        return Sized(gpu, tp, None, None, None, 0.0, None, str(e))
    if one.best is None:
        return Sized(gpu, tp, None, None, None, 0.0, None, "one replica meets the SLO at no rate tried")

    def fleet(n: int) -> Probe:
        return probe(with_layout(base, gpu, tp, n), target, knob_name, target_knob)

    n = max(1, math.ceil(target_knob / one.rate))
    best: tuple[int, Probe] | None = None
    at = fleet(n)
    if at.meets:
        best = (n, at)
        while n > 1 and (fewer := fleet(n - 1)).meets:  # routing may pack better than n x one replica
            n -= 1
            best = (n, fewer)
    else:
        for _ in range(_MAX_GROW_STEPS):
            n += max(1, n // 8)
            if n > max_replicas:
                break
            at = fleet(n)
            if at.meets:
                best = (n, at)
                break
    if best is None or best[0] > max_replicas:
        return Sized(gpu, tp, None, None, None, one.rate, None, f"more than {max_replicas} replicas needed")
    replicas, at = best
    gpus = replicas * tp * scenario.hardware.dp
    price = prices.get(gpu) if prices else None
    return Sized(gpu, tp, replicas, gpus, None if price is None else round(gpus * price, 2), one.rate, at)


def cheapest(scenario: Scenario, target: SloTarget, rate_rps: float, *, gpus: Sequence[str], tps: Sequence[int],
             max_replicas: int = 64, tolerance: float = 0.05, prices: dict[str, float] | None = None,
             workers: int | None = None, on_done: Callable[[Sized], None] | None = None) -> list[Sized]:
    """Every (GPU, TP) candidate sized for `rate_rps`, cheapest first (by price, else GPU count);
    candidates that cannot meet it come last."""
    if rate_rps <= 0:
        raise KairosError(f"--target-rate must be > 0, got {rate_rps:g}")
    if scenario.cluster.pools is not None:
        raise KairosError("--target-rate sizes colocated replicas: drop cluster.pools, or compare P/D layouts"
                          " with --search --disagg")
    if prices is not None and (missing := sorted(set(gpus) - set(prices))):
        raise KairosError(f"the price table has no price for {', '.join(missing)}")
    target_knob = knob_for_rate(scenario, rate_rps)
    jobs = [(scenario, target, gpu, tp, target_knob, max_replicas, tolerance, prices) for gpu in gpus for tp in tps]
    results: list[Sized] = []
    if workers == 1 or len(jobs) == 1:
        for job in jobs:
            results.append(size_candidate(*job))
            if on_done is not None:
                on_done(results[-1])
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for sized in pool.map(_size, jobs):
                results.append(sized)
                if on_done is not None:
                    on_done(sized)
    return sorted(results, key=_rank)


def _size(job: tuple) -> Sized:
    return size_candidate(*job)


def _rank(s: Sized) -> tuple:
    if s.replicas is None:
        return (1, 0.0, 0, s.gpu, s.tp)
    return (0, s.cost_per_hour if s.cost_per_hour is not None else float(s.gpus), s.gpus, s.gpu, s.tp)
