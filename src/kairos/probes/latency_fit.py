"""The front-end latency a calibrated simulation adds so that it reproduces a measured mean TTFT.

A simulated request reaches the engine when it arrives and gets its first token at
the end of the step that finished its prefill. Served, a request also spends time
the engine model never sees: HTTP parsing and validation, the hand-over to the
engine process and the engine taking it in, and streaming the token back. The
simulator models all of it as one latency before the engine sees a request, so
the latency is fitted where it is used: replay a calibration load in the
simulator with the fitted step model and no latency, and take what the clients'
mean TTFT exceeds the simulated one by.
Delaying every arrival by the same latency shifts a simulation starting idle by
exactly that much, so one replay is enough.

The same replay fits a load factor (fit_load_factor): the one factor on every
step-time coefficient that makes the simulated mean TPOT the measured one, for
an engine whose steps run slower under served traffic than when probed alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kairos.calibration.model import CalibratedModel
from kairos.errors import KairosError
from kairos.scenario.load import validate_scenario
from kairos.scenario.run import build_simulation, resolve_deployment
from kairos.workload.spec import RequestSpec, Span

# The content stream of the prompt prefix that every sample shares.
SHARED_PREFIX_KEY = 1


@dataclass(frozen=True, slots=True)
class LatencySample:
    """One calibration request as its client saw it: sent `sent_s` after the first, answered
    after `ttft_s`, then a token every `tpot_s` on average (0: not measured); its prompt starts
    with `shared_len` tokens common to every sample."""

    sent_s: float
    prompt_len: int
    shared_len: int
    output_len: int
    ttft_s: float
    tpot_s: float = 0.0


def simulated_latencies(profile: dict[str, Any], facts: dict[str, Any], samples: Sequence[LatencySample], *,
                        per_input_token: bool = False) -> list[tuple[float, float]]:
    """Each sample's (TTFT, TPOT) when the profile's step model serves the load with no per-request
    front-end latency (and none per prompt token either, unless `per_input_token`); TPOT is 0.0 for
    a one-token answer.

    `facts` is the engine to rebuild: a server's GET /kairos/engine answer, or the like.
    """
    engine = {key: facts[key] for key in ("max_num_seqs", "max_num_batched_tokens", "block_size",
                                          "num_gpu_blocks", "enable_prefix_caching", "enable_chunked_prefill",
                                          "policy", "policy_options", "predictor", "predictor_options")
              if facts.get(key) is not None}
    scenario = validate_scenario({"model": {"name": profile["model"], "max_model_len": facts["max_model_len"]},
                                  "engine": engine, "perf": {"model": "calibrated"}}, "the calibration load")
    latency = {"request_latency_s": 0.0}
    if not per_input_token:
        latency["request_latency_per_input_token_s"] = 0.0
    model = CalibratedModel({**profile, **latency})
    specs = [RequestSpec(f"latency-{i}", sample.sent_s, sample.prompt_len, sample.output_len,
                         shared=(Span(SHARED_PREFIX_KEY, 0, sample.shared_len),) if sample.shared_len else ())
             for i, sample in enumerate(samples)]
    records = {record.request_id: record
               for record in build_simulation(scenario, resolve_deployment(scenario, model), specs).run().records}
    missing = [spec.request_id for spec in specs
               if records.get(spec.request_id) is None or not records[spec.request_id].finished]
    if missing:
        raise KairosError(f"the simulated engine did not serve {len(missing)} of the {len(specs)} "
                          "calibration requests: its KV cache or context is too small for them")
    latencies = []
    for spec in specs:
        record = records[spec.request_id]
        first, finish = float(record.first_token_s), float(record.finish_s)  # type: ignore[arg-type]
        tpot = (finish - first) / (record.output_tokens - 1) if record.output_tokens > 1 else 0.0
        latencies.append((first - record.arrival_s, tpot))
    return latencies


def simulated_ttfts(profile: dict[str, Any], facts: dict[str, Any], samples: Sequence[LatencySample]) -> list[float]:
    """Each sample's TTFT when the profile's step model serves the load with no front-end latency."""
    return [ttft for ttft, _ in simulated_latencies(profile, facts, samples)]


def scaled(profile: dict[str, Any], factor: float) -> dict[str, Any]:
    """The profile with every step-time coefficient `factor` times its own."""
    return {**profile, "coefficients": {term: value * factor for term, value in profile["coefficients"].items()}}


# The load factor's search: within these bounds, until the simulated mean TPOT is this close.
LOAD_FACTOR_BOUNDS = (0.25, 4.0)
LOAD_FACTOR_TOLERANCE = 1e-3


def fit_load_factor(profile: dict[str, Any], facts: dict[str, Any], samples: Sequence[LatencySample]) -> float:
    """The factor on every step-time coefficient that makes the simulated mean TPOT of `samples`
    (those with a measured TPOT) the measured one, by bisection: TPOT grows with it.
    1.0 where no sample has a TPOT; a bound where even it misses."""
    timed = [sample for sample in samples if sample.tpot_s > 0 and sample.output_len > 1]
    if not timed:
        return 1.0
    measured = sum(sample.tpot_s for sample in timed) / len(timed)

    def simulated(factor: float) -> float:
        tpots = [tpot for _, tpot in simulated_latencies(scaled(profile, factor), facts, timed)]
        return sum(tpots) / len(tpots)

    low, high = LOAD_FACTOR_BOUNDS
    if simulated(low) >= measured:
        return low
    if simulated(high) <= measured:
        return high
    while high / low > 1.0 + LOAD_FACTOR_TOLERANCE:
        mid = (low * high) ** 0.5
        low, high = (mid, high) if simulated(mid) < measured else (low, mid)
    return (low * high) ** 0.5


def fit_request_latency(profile: dict[str, Any], facts: dict[str, Any], samples: Sequence[LatencySample], *,
                        per_input_token: bool = False) -> float:
    """The latency per request (>= 0 s) that makes the simulated mean TTFT of `samples` the measured
    one; beside the profile's latency per prompt token where `per_input_token`, else alone."""
    if not samples:
        return 0.0
    simulated = [ttft for ttft, _ in simulated_latencies(profile, facts, samples, per_input_token=per_input_token)]
    measured = sum(sample.ttft_s for sample in samples) / len(samples)
    return max(0.0, measured - sum(simulated) / len(simulated))
