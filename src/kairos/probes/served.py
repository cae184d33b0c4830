"""Calibrate a running Kairos server: drive a grid of loads through it and fit its logged steps.

In-process calibration (`kairos.probes.engine`) times the bare engine. A server
also spends time per step on HTTP streaming and on sharing the machine with its
HTTP side, so a twin of a *served* engine is calibrated here: phases of requests
(batch size x prompt length, with and without a shared prefix, arriving together
or spread out so that prefill chunks mix with decodes) go through the server's
own API, and the server's step log gives every step's shape and time.

The grid runs in several passes, each in its own shuffled order, after an
untimed warm-up: a machine whose speed drifts (a shared virtual machine's slow
spells last seconds) then spreads its drift over every shape instead of
skewing the few shapes measured during one spell. A last phase of Poisson
requests fits the front-end latency the simulation adds (kairos.probes.latency_fit).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from kairos.bench.client import CompletionClient, completion_body
from kairos.bench.engine_steps import ENGINE_PATH, STEPS_COUNT_PATH, STEPS_PATH, step_point
from kairos.bench.prompts import random_token_ids
from kairos.calibration.fit import fit_step_time
from kairos.calibration.machine_speed import SPEED_KEY, at_speed, mean_reading, reference_time
from kairos.calibration.profile import SCHEMA, MeasuredPoint
from kairos.calibration.terms import TERMS, AttentionLayout
from kairos.errors import KairosError
from kairos.probes.latency_fit import LatencySample, fit_request_latency
from kairos.probes.load_phase import LoadRequest, poisson_samples
from kairos.workload import RequestSpec

# Each logged step's error weighs time ** -0.5 in the fit (kairos.calibration.fit.fit_step_time): an
# absolute fit would let the grid's big batches set the short steps a served load mostly runs.
FIT_WEIGHT_POWER = 0.5


@dataclass(frozen=True, slots=True)
class Phase:
    """`requests` requests of `prompt` tokens (the first `shared` of them common) and `output` tokens."""

    requests: int
    prompt: int
    output: int
    shared: int
    spread_s: float  # arrivals spread uniformly over this long (0: all at once)


def calibration_phases(max_seqs: int, max_len: int, quick: bool = False) -> list[Phase]:
    """The grid of loads: batch sizes up to max_num_seqs, prompts up to the context length."""
    sizes = [n for n in (1, 2, 4, 8, 16, 32, 64, 128, 256) if n <= max_seqs] or [1]
    prompts = [p for p in (32, 256, 512, 1024) if p + 64 <= max_len] or [max(1, max_len // 2)]
    if quick:
        sizes, prompts = sizes[::3], prompts[::3]
    phases = []
    for n in sizes:
        for prompt in prompts:
            phases.append(Phase(n, prompt, 48, 0, 0.0))
            phases.append(Phase(n, prompt, 48, prompt // 2, 0.05 * n))
    return phases


def calibrate_served(base_url: str, *, quick: bool = False, passes: int = 3, seed: int = 0,
                     timeout_s: float = 300.0,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run the calibration phases against a Kairos server and return its profile.

    `passes` runs of the grid are timed (one with `quick`, which also skips the warm-up).
    """
    if passes < 1:
        raise KairosError(f"calibration passes must be >= 1, got {passes}")
    started = time.perf_counter()
    facts = _get(base_url, ENGINE_PATH)
    max_seqs, max_len = int(facts["max_num_seqs"]), int(facts["max_model_len"])
    phases = calibration_phases(max_seqs, max_len, quick)
    warmup = [] if quick else calibration_phases(max_seqs, max_len, quick=True)
    rng = np.random.default_rng(seed)
    timed = [phases[i] for _ in range(1 if quick else passes) for i in rng.permutation(len(phases))]
    total = len(warmup) + len(timed) + 1  # the last step: the front-end latency phase

    def report(offset: int) -> Callable[[int, int], None] | None:
        return None if progress is None else lambda done, _: progress(offset + done, total)

    asyncio.run(_drive(base_url, facts, warmup, rng, timeout_s, report(0)))
    first = int(_get(base_url, STEPS_COUNT_PATH)["next"])
    asyncio.run(_drive(base_url, facts, timed, rng, timeout_s, report(len(warmup))))
    points = _logged_since(base_url, first)
    if len(points) < len(TERMS):
        raise KairosError(f"{base_url} logged {len(points)} steps during calibration, too few to fit")
    engine = {key: facts.get(key) for key in ("block_size", "max_num_batched_tokens", "max_num_seqs",
                                              "num_gpu_blocks", "attention_min_split_slots")}
    if facts.get("attention"):  # a server that names its attention kernels; unnamed: padded
        engine["attention"] = facts["attention"]
    fit = fit_step_time(points, weight_power=FIT_WEIGHT_POWER, layout=AttentionLayout.of_engine(engine))
    latency_first = int(_get(base_url, STEPS_COUNT_PATH)["next"])
    samples, http_latency = asyncio.run(_latency_samples(base_url, facts, rng, timeout_s,
                                                         LATENCY_REQUESTS // 3 if quick else LATENCY_REQUESTS))
    latency_points = _logged_since(base_url, latency_first)
    if progress is not None:
        progress(total, total)
    profile = {
        "schema": SCHEMA,
        "model": facts["model"],
        "model_config": facts["model_config"],
        "dtype": facts.get("dtype"),
        "device": facts.get("device"),
        "device_name": facts.get("device"),
        "torch_threads": facts.get("torch_threads"),
        "engine": engine,
        "measurement": {"timed": f"served engine-loop time per step ({base_url}{STEPS_PATH})",
                        "phases": len(timed), "passes": 1 if quick else passes,
                        "warmup_phases": len(warmup), "grid": "quick" if quick else "default",
                        "fit": f"least squares, errors weighted by fitted step time ** -{FIT_WEIGHT_POWER}",
                        "request_latency": "mean client TTFT over a Poisson load less the simulated one "
                                           "(this profile, no latency)",
                        "latency_requests": len(samples),
                        "http_latency_s": http_latency,
                        "wall_time_s": time.perf_counter() - started},
        "terms": list(TERMS),
        "coefficients": fit.coefficients,
        "fit": fit.errors(),
        "idle_time_constant_s": fit.idle_time_constant_s,
        "request_latency_s": 0.0,
        "points": [p.to_dict() for p in points],
    }
    reference_s, coverage = mean_reading(points), reference_time(points)[1]
    latency_profile = profile
    if reference_s > 0:  # the server times a reference step (kairos serve --reference-step-ms)
        profile[SPEED_KEY] = {"reference_step_s": reference_s, "steps_with_reading": coverage}
        # The latency phase's steps ran at its own speed: replay it at that speed, so that
        # the front-end latency does not absorb the machine's swing.
        latency_reference = mean_reading(latency_points)
        if latency_reference > 0:
            factor = latency_reference / reference_s
            profile[SPEED_KEY]["latency_phase_factor"] = factor
            latency_profile = at_speed(profile, factor)
    profile["request_latency_s"] = fit_request_latency(latency_profile, facts, samples)
    return profile


async def _drive(base_url: str, facts: dict[str, Any], phases: list[Phase], rng: np.random.Generator,
                 timeout_s: float, progress: Callable[[int, int], None] | None) -> None:
    vocab = int(facts["model_config"]["vocab_size"])
    async with CompletionClient(base_url, timeout_s=timeout_s) as client:
        for done, phase in enumerate(phases):
            common = random_token_ids(rng, vocab, phase.shared)
            offsets = np.sort(rng.uniform(0.0, phase.spread_s, phase.requests)) if phase.spread_s else None

            async def one(i: int) -> None:
                if offsets is not None:
                    await asyncio.sleep(float(offsets[i]))
                prompt = common + random_token_ids(rng, vocab, phase.prompt - phase.shared)
                result = await client.stream(_body(facts, prompt, phase.output))
                if result.error is not None:
                    raise KairosError(f"{base_url}: a calibration request failed: {result.error}")

            await asyncio.gather(*(one(i) for i in range(phase.requests)))
            if progress is not None:
                progress(done + 1, len(phases))


# The front-end latency phase: Poisson arrivals of requests like a benchmark's (a shared
# system prompt, some unique tokens, a few dozen output tokens) keep the HTTP side as busy.
LATENCY_REQUESTS = 100
LATENCY_RATE = 10.0  # requests per second
LATENCY_PROMPT = 384
LATENCY_SHARED = 256
LATENCY_OUTPUT = 64


async def _latency_samples(base_url: str, facts: dict[str, Any], rng: np.random.Generator,
                           timeout_s: float, requests: int) -> tuple[list[LatencySample], float]:
    """The latency phase's requests as their clients saw them, and the mean of the clients'
    TTFT less the server's own (vllm:time_to_first_token_seconds: from the HTTP handler
    taking a request to the engine producing its first token), for the record.

    Measured under load because the HTTP side's share grows with the streams it serves.
    """
    vocab = int(facts["model_config"]["vocab_size"])
    output = max(1, min(LATENCY_OUTPUT, int(facts["max_model_len"]) // 4))
    prompt_len = max(2, min(LATENCY_PROMPT, int(facts["max_model_len"]) - output))
    common = random_token_ids(rng, vocab, min(LATENCY_SHARED, prompt_len // 2))
    arrivals = np.cumsum(rng.exponential(1.0 / LATENCY_RATE, requests))
    load = [LoadRequest(float(at), common + random_token_ids(rng, vocab, prompt_len - len(common)), len(common),
                        output) for at in arrivals]
    async with CompletionClient(base_url, timeout_s=timeout_s) as client:
        before = await _server_ttft_totals(client, base_url)
        samples = await poisson_samples(client, load, lambda prompt, n: _body(facts, prompt, n))
        after = await _server_ttft_totals(client, base_url)
    served = after[1] - before[1]
    if served != len(samples):
        raise KairosError(f"{base_url} served {served:g} first tokens for {len(samples)} calibration requests: "
                          "calibrate a server nothing else is using")
    client_ttft = sum(sample.ttft_s for sample in samples) / len(samples)
    return samples, max(0.0, client_ttft - (after[0] - before[0]) / served)


_TTFT_SERIES = re.compile(r"^vllm:time_to_first_token_seconds_(sum|count)(?:\{[^}]*\})? (\S+)$", re.MULTILINE)


async def _server_ttft_totals(client: CompletionClient, base_url: str) -> tuple[float, float]:
    text = await client.get_text("/metrics")
    if text is None:
        raise KairosError(f"{base_url}/metrics did not answer")
    return ttft_totals(text)


def ttft_totals(metrics_text: str) -> tuple[float, float]:
    """(sum, count) of a Prometheus page's time-to-first-token histogram, over all its label sets."""
    totals = {"sum": 0.0, "count": 0.0}
    for series, value in _TTFT_SERIES.findall(metrics_text):
        totals[series] += float(value)
    return totals["sum"], totals["count"]


def _body(facts: dict[str, Any], prompt: list[int], output: int) -> dict[str, Any]:
    """The request `kairos bench` would send: the server does the same work per token as in a benchmark,
    and usage in every chunk times the first token even when its text is empty."""
    return completion_body(RequestSpec("calibration", 0.0, len(prompt), output), facts["model"], prompt,
                           exact_lengths=True)


def _logged_since(base_url: str, first: int) -> list[MeasuredPoint]:
    """The server's logged steps from number `first` on."""
    logged = _get(base_url, f"{STEPS_PATH}?since={first}")["steps"]
    return [step_point(step, f"{base_url}{STEPS_PATH}, step {first + i}") for i, step in enumerate(logged)]


def _get(base_url: str, path: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{base_url}{path}", timeout=30.0) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise KairosError(f"{base_url}{path} not found: calibrating through HTTP needs `kairos serve`") from None
        raise KairosError(f"{base_url}{path} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise KairosError(f"cannot reach {base_url}: {getattr(exc, 'reason', exc)}") from None
    except json.JSONDecodeError:
        raise KairosError(f"{base_url}{path} did not answer JSON") from None
