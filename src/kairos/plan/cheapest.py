"""The cheapest deployment that meets an SLO at a target rate, over GPU kinds and tensor parallelism,
colocated or (for a scenario with cluster.pools) with prefill and decode pools.

For each colocated (GPU, TP) candidate: one replica's capacity
(kairos.plan.capacity), then the replica count it implies, checked by simulating
the whole fleet at the target rate and stepped up (or down) until it is the
fewest that meets the SLO. The scenario's P/D layout (each pool's GPU, TP and
engine) is sized in both pools: from the fewest decode replicas that meet the
SLO beside the most prefill replicas, for each decode replica count the fewest
prefill replicas that meet it (a doubling then a bisection), until more decode
replicas alone would cost more than the best found. Candidates run in parallel
processes.
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
    # A P/D candidate: `gpu`, `tp` and `replicas` are its decode pool's; these its prefill pool's.
    prefill_gpu: str | None = None
    prefill_tp: int | None = None
    prefill_replicas: int | None = None

    @property
    def disaggregated(self) -> bool:
        return self.prefill_gpu is not None

    def layout(self) -> str:
        """The candidate in words: "4 x h200 tp1", or "3P(h200 tp1)+1D(h200 tp8)"."""
        if not self.disaggregated:
            return f"{self.replicas or '?'} x {self.gpu} tp{self.tp}"
        return (f"{self.prefill_replicas or '?'}P({self.prefill_gpu} tp{self.prefill_tp})"
                f"+{self.replicas or '?'}D({self.gpu} tp{self.tp})")

    def to_json(self) -> dict:
        return {**asdict(self), "layout": self.layout()}


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


def colocated(scenario: Scenario) -> Scenario:
    """The scenario without prefill/decode pools: its engine section on colocated replicas."""
    return scenario.model_copy(update={"cluster": scenario.cluster.model_copy(
        update={"pools": None, "disaggregation": None})})


def with_pool_sizes(scenario: Scenario, prefill: int, decode: int) -> Scenario:
    """The P/D scenario with `prefill` and `decode` replicas in its pools."""
    pools = scenario.cluster.pools
    assert pools is not None
    sized = pools.model_copy(update={"prefill": pools.prefill.model_copy(update={"replicas": prefill}),
                                     "decode": pools.decode.model_copy(update={"replicas": decode})})
    return scenario.model_copy(update={"cluster": scenario.cluster.model_copy(update={"pools": sized})})


def size_pools(scenario: Scenario, target: SloTarget, target_knob: float, max_replicas: int,
               prices: dict[str, float] | None) -> Sized:
    """The cheapest sizes of the scenario's two pools that meet `target` at `target_knob`."""
    pools = scenario.cluster.pools
    assert pools is not None
    knob_name, _ = rate_knob(scenario)
    hw = scenario.hardware
    (p_gpu, p_tp), (d_gpu, d_tp) = ((pool.gpu or hw.gpu, pool.tp or hw.tp) for pool in (pools.prefill, pools.decode))

    def cost(prefill: int, decode: int) -> float:
        if prices:
            return prefill * p_tp * prices[p_gpu] + decode * d_tp * prices[d_gpu]
        return float(prefill * p_tp + decode * d_tp)

    def meets(prefill: int, decode: int) -> Probe | None:
        at = probe(with_pool_sizes(scenario, prefill, decode), target, knob_name, target_knob)
        return at if at.meets else None

    best: tuple[int, int, Probe] | None = None
    try:
        # Fewer decode replicas than meet it beside the most prefill replicas never meet it.
        fewest_decode = _fewest(lambda n: meets(max_replicas, n), max_replicas)
        for decode in range(fewest_decode[0] if fewest_decode else max_replicas + 1, max_replicas + 1):
            if best is not None and cost(1, decode) >= cost(best[0], best[1]):
                break
            found = _fewest(lambda n, decode=decode: meets(n, decode), max_replicas)
            if found is not None and (best is None or cost(found[0], decode) < cost(best[0], best[1])):
                best = (found[0], decode, found[1])
    except KairosError as e:  # e.g. the model does not fit a pool's GPU at its TP
        return Sized(d_gpu, d_tp, None, None, None, 0.0, None, str(e), p_gpu, p_tp)
    if best is None:
        return Sized(d_gpu, d_tp, None, None, None, 0.0, None, f"more than {max_replicas} replicas per pool needed",
                     p_gpu, p_tp)
    prefill, decode, at = best
    gpus = prefill * p_tp + decode * d_tp
    price = round(cost(prefill, decode), 2) if prices else None
    return Sized(d_gpu, d_tp, decode, gpus, price, 0.0, at, "", p_gpu, p_tp, prefill)


def _fewest(meets: Callable[[int], Probe | None], most: int) -> tuple[int, Probe] | None:
    """The smallest n in 1..most with meets(n) (assumed monotone: more replicas never miss where fewer
    meet): doubling, then bisecting."""
    low, high, at = 0, 1, meets(1)
    while at is None:
        if high >= most:
            return None
        low, high = high, min(2 * high, most)
        at = meets(high)
    while high - low > 1:
        mid = (low + high) // 2
        if (found := meets(mid)) is not None:
            high, at = mid, found
        else:
            low = mid
    return high, at


def cheapest(scenario: Scenario, target: SloTarget, rate_rps: float, *, gpus: Sequence[str], tps: Sequence[int],
             max_replicas: int = 64, tolerance: float = 0.05, prices: dict[str, float] | None = None,
             workers: int | None = None, on_done: Callable[[Sized], None] | None = None) -> list[Sized]:
    """Every colocated (GPU, TP) candidate sized for `rate_rps`, and with cluster.pools the scenario's P/D
    layout too, cheapest first (by price, else GPU count); candidates that cannot meet it come last."""
    if rate_rps <= 0:
        raise KairosError(f"--target-rate must be > 0, got {rate_rps:g}")
    pools = scenario.cluster.pools
    layout_gpus = set(gpus) | ({pool.gpu or scenario.hardware.gpu for pool in (pools.prefill, pools.decode)}
                               if pools is not None else set())
    if prices is not None and (missing := sorted(layout_gpus - set(prices))):
        raise KairosError(f"the price table has no price for {', '.join(missing)}")
    target_knob = knob_for_rate(scenario, rate_rps)
    jobs: list[tuple] = [(size_candidate, colocated(scenario), target, gpu, tp, target_knob, max_replicas, tolerance, prices)
                         for gpu in gpus for tp in tps]
    if pools is not None:
        jobs.append((size_pools, scenario, target, target_knob, max_replicas, prices))
    results: list[Sized] = []
    if workers == 1 or len(jobs) == 1:
        for job in jobs:
            results.append(_size(job))
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
    sizer, *args = job
    result: Sized = sizer(*args)
    return result


def _rank(s: Sized) -> tuple:
    if s.replicas is None:
        return (1, 0.0, 0, s.layout())
    return (0, s.cost_per_hour if s.cost_per_hour is not None else float(s.gpus), s.gpus, s.layout())
