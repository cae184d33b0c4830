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
    after `ttft_s`; its prompt starts with `shared_len` tokens common to every sample."""

    sent_s: float
    prompt_len: int
    shared_len: int
    output_len: int
    ttft_s: float


def simulated_ttfts(profile: dict[str, Any], facts: dict[str, Any], samples: Sequence[LatencySample]) -> list[float]:
    """Each sample's TTFT when the profile's step model serves the load with no front-end latency.

    `facts` is the server's GET /kairos/engine answer: the engine to rebuild.
    """
    engine = {key: facts[key] for key in ("max_num_seqs", "max_num_batched_tokens", "block_size",
                                          "num_gpu_blocks", "enable_prefix_caching", "enable_chunked_prefill",
                                          "policy", "policy_options", "predictor", "predictor_options")
              if facts.get(key) is not None}
    scenario = validate_scenario({"model": {"name": profile["model"], "max_model_len": facts["max_model_len"]},
                                  "engine": engine, "perf": {"model": "calibrated"}}, "the calibration load")
    model = CalibratedModel({**profile, "request_latency_s": 0.0, "request_latency_per_input_token_s": 0.0})
    specs = [RequestSpec(f"latency-{i}", sample.sent_s, sample.prompt_len, sample.output_len,
                         shared=(Span(SHARED_PREFIX_KEY, 0, sample.shared_len),) if sample.shared_len else ())
             for i, sample in enumerate(samples)]
    records = build_simulation(scenario, resolve_deployment(scenario, model), specs).run().records
    ttfts = {record.request_id: record.ttft_s for record in records}
    missing = [spec.request_id for spec in specs if ttfts.get(spec.request_id) is None]
    if missing:
        raise KairosError(f"the simulated engine did not serve {len(missing)} of the {len(specs)} "
                          "calibration requests: its KV cache or context is too small for them")
    return [float(ttfts[spec.request_id]) for spec in specs]  # type: ignore[arg-type]


def fit_request_latency(profile: dict[str, Any], facts: dict[str, Any],
                        samples: Sequence[LatencySample]) -> float:
    """The latency (>= 0 s) that makes the simulated mean TTFT of `samples` the measured one."""
    if not samples:
        return 0.0
    simulated = simulated_ttfts(profile, facts, samples)
    measured = sum(sample.ttft_s for sample in samples) / len(samples)
    return max(0.0, measured - sum(simulated) / len(simulated))
