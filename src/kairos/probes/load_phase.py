"""Calibration under load: Poisson requests through a server's API, and what they say of its probes' fit.

Probes time an engine's steps one shape at a time on an otherwise idle server.
Served traffic runs the same steps among other work (new requests taken in,
tokens streamed out to many clients), and its clients' TTFT holds more
front-end time than idle probes show. A load phase measures that where it
arises: `poisson_samples` sends requests at Poisson arrivals, streamed as
`kairos bench` streams them, and keeps what each client saw
(kairos.probes.latency_fit.LatencySample). `kairos serve`'s calibration fits
its front-end latency on one (kairos.probes.served).

For a server without a step log (vLLM), `fit_under_load` replays the phase in
the simulator with the probes' profile, scales every step-time coefficient by
the one load factor that makes the simulated mean TPOT the measured one, then
fits the front-end latency per request to the mean TTFT. The phase's rate is
LOAD_SHARE of what the engine serves one request at a time, by the probes'
fit: a few requests running together, between an idle engine and a queueing
one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kairos.bench.client import CompletionClient
from kairos.bench.prompts import random_token_ids
from kairos.bench.stream import StreamResult
from kairos.calibration.model import CalibratedModel
from kairos.engine.batch_shape import BatchShape
from kairos.errors import KairosError
from kairos.probes.latency_fit import (LatencySample, fit_load_factor, fit_request_latency, scaled,
                                       simulated_latencies)

# The black-box load phase: requests of unique prompts and a few dozen output tokens, lognormal
# lengths (median, sigma) like a chat benchmark's, at LOAD_SHARE of the one-at-a-time rate.
LOAD_REQUESTS = 100
LOAD_PROMPT = (256, 0.5)
LOAD_OUTPUT = (64, 0.5)
LOAD_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class LoadRequest:
    """One request of a load phase: sent `at_s` after the phase starts; its prompt starts with
    `shared_len` tokens common to the phase."""

    at_s: float
    prompt: list[int]
    shared_len: int
    output_len: int


async def poisson_samples(client: CompletionClient, requests: Sequence[LoadRequest],
                          body: Callable[[list[int], int], dict[str, Any]]) -> list[LatencySample]:
    """Send each request at its time, streamed (`body(prompt, output_len)` is what is posted), and
    return what each client saw, times from the first send. A failed request is a KairosError."""
    start = time.perf_counter()

    async def one(request: LoadRequest) -> StreamResult:
        await asyncio.sleep(max(0.0, start + request.at_s - time.perf_counter()))
        result = await client.stream(body(request.prompt, request.output_len))
        if result.error is not None or result.first_token_ts is None:
            raise KairosError(f"{client.base_url}: a calibration request failed: {result.error or 'no tokens'}")
        return result

    results = await asyncio.gather(*(one(request) for request in requests))
    first_sent = min(result.sent_ts for result in results)
    return [LatencySample(result.sent_ts - first_sent, len(request.prompt), request.shared_len,
                          request.output_len, result.first_token_ts - result.sent_ts,  # type: ignore[operator]
                          _tpot(result))
            for request, result in zip(requests, results)]


def _tpot(result: StreamResult) -> float:
    """The client's mean time between tokens after the first (0.0 for a one-token answer)."""
    tokens = result.output_tokens
    if tokens < 2 or not result.token_ts or result.first_token_ts is None:
        return 0.0
    return (result.token_ts[-1] - result.first_token_ts) / (tokens - 1)


def load_rate(profile: dict[str, Any], prompt_len: int, output_len: int) -> float:
    """LOAD_SHARE of the requests per second the profile's engine serves one at a time."""
    model = CalibratedModel(profile)
    prefill = model.step_time(BatchShape(prefill_new=(prompt_len,), prefill_ctx=(0,), num_sampled=1))
    context = prompt_len + output_len // 2
    decode = model.step_time(BatchShape(num_decodes=1, decode_kv_sum=context, num_sampled=1, decode_kv_max=context))
    return LOAD_SHARE / (prefill + (output_len - 1) * decode)


def blackbox_load(rng: np.random.Generator, profile: dict[str, Any], vocab_size: int, max_model_len: int,
                  requests: int) -> tuple[list[LoadRequest], float]:
    """The black-box load phase's requests (unique prompts, lognormal lengths that fit
    `max_model_len`) and their rate."""
    def lengths(median: int, sigma: float, low: int, high: int) -> np.ndarray:
        return np.clip(np.round(rng.lognormal(np.log(median), sigma, requests)), low, high).astype(int)

    outputs = lengths(*LOAD_OUTPUT, 2, max(2, max_model_len // 4))
    prompts = lengths(*LOAD_PROMPT, 16, max(16, max_model_len - int(outputs.max())))
    rate = load_rate(profile, int(np.median(prompts)), int(np.median(outputs)))
    arrivals = np.concatenate([[0.0], np.cumsum(rng.exponential(1.0 / rate, requests - 1))])
    return [LoadRequest(float(at), random_token_ids(rng, vocab_size, int(prompt)), 0, int(output))
            for at, prompt, output in zip(arrivals, prompts, outputs)], rate


def fit_under_load(profile: dict[str, Any], engine: dict[str, Any], samples: Sequence[LatencySample],
                   rate: float) -> dict[str, Any]:
    """The profile scaled to the load phase's mean TPOT, with its front-end latency per request
    refitted to the phase's mean TTFT (the latency per prompt token stays the idle probes').

    `engine` is the served engine's settings and max_model_len (latency_fit.simulated_latencies).
    The measurement records the phase, the factor and the means before and after.
    """
    def means(of: dict[str, Any]) -> dict[str, float]:
        simulated = simulated_latencies({**of, "request_latency_s": 0.0}, engine, samples, per_input_token=True)
        timed = [tpot for _, tpot in simulated if tpot > 0]
        return {"ttft_s": float(np.mean([ttft for ttft, _ in simulated])) + of["request_latency_s"],
                "tpot_s": float(np.mean(timed)) if timed else 0.0}

    factor = fit_load_factor(profile, engine, samples)
    loaded = scaled(profile, factor)
    loaded["request_latency_s"] = fit_request_latency(loaded, engine, samples, per_input_token=True)
    timed = [sample.tpot_s for sample in samples if sample.tpot_s > 0]
    loaded["measurement"] = {**profile["measurement"], "load_phase": {
        "requests": len(samples), "rate_per_s": rate, "factor": factor,
        "measured": {"ttft_s": float(np.mean([sample.ttft_s for sample in samples])),
                     "tpot_s": float(np.mean(timed)) if timed else 0.0},
        "probes_fit": means(profile), "fitted": means(loaded),
        "how": "Poisson requests of unique prompts, streamed; every step-time coefficient scaled by the factor "
               "that makes the replayed mean TPOT the measured one, then the front-end time per request "
               "fitted to the mean TTFT (kairos.probes.load_phase)"}}
    return loaded
