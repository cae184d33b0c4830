"""Calibrate a running Kairos server: drive a grid of loads through it and fit its logged steps.

In-process calibration (`kairos.serve.calibrate`) times the bare engine. A server
also spends time per step on HTTP streaming and on sharing the interpreter with
its event loop, so a twin of a *served* engine is calibrated here: phases of
requests (batch size x prompt length, with and without a shared prefix, arriving
together or spread out so that prefill chunks mix with decodes) go through the
server's own API, and the server's step log gives every step's shape and time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from kairos.bench.client import CompletionClient
from kairos.errors import KairosError
from kairos.perf.base import BatchShape
from kairos.perf.calibrated import SCHEMA, TERMS, MeasuredPoint, fit_step_time

STEPS_PATH = "/kairos/steps"
ENGINE_PATH = "/kairos/engine"


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
    prompts = [p for p in (32, 256, 1024) if p + 64 <= max_len] or [max(1, max_len // 2)]
    if quick:
        sizes, prompts = sizes[::3], prompts[::2]
    phases = []
    for n in sizes:
        for prompt in prompts:
            phases.append(Phase(n, prompt, 48, 0, 0.0))
            phases.append(Phase(n, prompt, 48, prompt // 2, 0.05 * n))
    return phases


def calibrate_served(base_url: str, *, quick: bool = False, seed: int = 0, timeout_s: float = 300.0,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run the calibration phases against a Kairos server and return its profile."""
    started = time.perf_counter()
    facts = _get(base_url, ENGINE_PATH)
    phases = calibration_phases(int(facts["max_num_seqs"]), int(facts["max_model_len"]), quick)
    first = int(_get(base_url, STEPS_PATH)["next"])
    asyncio.run(_drive(base_url, facts, phases, seed, timeout_s, progress))
    logged = _get(base_url, f"{STEPS_PATH}?since={first}")["steps"]
    points = [MeasuredPoint("served", _shape(step), float(step["seconds"]), (float(step["seconds"]),))
              for step in logged]
    if len(points) < len(TERMS):
        raise KairosError(f"{base_url} logged {len(points)} steps during calibration, too few to fit")
    fit = fit_step_time(points, relative=False)
    latency = asyncio.run(_request_latency(base_url, facts, seed, timeout_s))
    return {
        "schema": SCHEMA,
        "model": facts["model"],
        "model_config": facts["model_config"],
        "dtype": facts.get("dtype"),
        "device": facts.get("device"),
        "device_name": facts.get("device"),
        "torch_threads": facts.get("torch_threads"),
        "engine": {key: facts.get(key) for key in ("block_size", "max_num_batched_tokens", "max_num_seqs",
                                                   "num_gpu_blocks")},
        "measurement": {"timed": f"served engine-loop time per step ({base_url}{STEPS_PATH})",
                        "phases": len(phases), "grid": "quick" if quick else "default",
                        "fit": "least squares on absolute error (keeps the total step time)",
                        "wall_time_s": time.perf_counter() - started},
        "terms": list(TERMS),
        "coefficients": fit.coefficients,
        "fit": fit.errors(),
        "request_latency_s": latency,
        "points": [p.to_dict() for p in points],
    }


async def _drive(base_url: str, facts: dict[str, Any], phases: list[Phase], seed: int, timeout_s: float,
                 progress: Callable[[int, int], None] | None) -> None:
    rng = np.random.default_rng(seed)
    vocab = int(facts["model_config"]["vocab_size"])
    low = max(1, vocab // 32)  # special tokens tend to sit at the start of small vocabularies
    async with CompletionClient(base_url, timeout_s=timeout_s) as client:
        for done, phase in enumerate(phases):
            common = rng.integers(low, vocab, phase.shared).tolist()
            offsets = np.sort(rng.uniform(0.0, phase.spread_s, phase.requests)) if phase.spread_s else None

            async def one(i: int) -> None:
                if offsets is not None:
                    await asyncio.sleep(float(offsets[i]))
                prompt = common + rng.integers(low, vocab, phase.prompt - phase.shared).tolist()
                result = await client.stream({
                    "model": facts["model"], "prompt": prompt, "max_tokens": phase.output,
                    "temperature": 0.0, "stream": True, "ignore_eos": True, "min_tokens": phase.output,
                })
                if result.error is not None:
                    raise KairosError(f"{base_url}: a calibration request failed: {result.error}")

            await asyncio.gather(*(one(i) for i in range(phase.requests)))
            if progress is not None:
                progress(done + 1, len(phases))


async def _request_latency(base_url: str, facts: dict[str, Any], seed: int, timeout_s: float,
                           samples: int = 15) -> float:
    """Front-end latency: an idle server's time to first token, less the step that computed it.

    One request at a time, a short prompt and one output token: the TTFT is the
    HTTP and request handling time plus one prefill step, whose time the step log
    holds. (Subtracting the fitted time of that step instead would fold the fit's
    error at this one small shape into every simulated request.)
    """
    prompt_len = 16
    rng = np.random.default_rng(seed + 1)
    vocab = int(facts["model_config"]["vocab_size"])
    latencies = []
    async with CompletionClient(base_url, timeout_s=timeout_s) as client:
        for _ in range(samples):
            first = int((await _get_async(client, base_url, STEPS_PATH))["next"])
            prompt = rng.integers(max(1, vocab // 32), vocab, prompt_len).tolist()
            result = await client.stream({"model": facts["model"], "prompt": prompt, "max_tokens": 1,
                                          "temperature": 0.0, "stream": True, "ignore_eos": True})
            if result.error is not None or result.first_token_ts is None:
                continue
            steps = (await _get_async(client, base_url, f"{STEPS_PATH}?since={first}"))["steps"]
            prefill = [step["seconds"] for step in steps if step["prefill_new"]]
            if len(prefill) == 1:  # the probe's own step, alone in the engine
                latencies.append(result.first_token_ts - result.sent_ts - prefill[0])
    if not latencies:
        raise KairosError(f"{base_url}: no latency probe request succeeded")
    return max(0.0, float(np.median(latencies)))


async def _get_async(client: CompletionClient, base_url: str, path: str) -> dict[str, Any]:
    data = await client.get_json(path)
    if data is None:
        raise KairosError(f"{base_url}{path} did not answer with JSON")
    return data


def _get(base_url: str, path: str) -> dict[str, Any]:
    try:
        response = httpx.get(f"{base_url}{path}", timeout=30.0)
    except httpx.HTTPError as exc:
        raise KairosError(f"cannot reach {base_url}: {exc}") from None
    if response.status_code == 404:
        raise KairosError(f"{base_url}{path} not found: calibrating through HTTP needs `kairos serve`")
    if response.status_code != 200:
        raise KairosError(f"{base_url}{path} answered HTTP {response.status_code}")
    return response.json()


def _shape(step: dict[str, Any]) -> BatchShape:
    return BatchShape(tuple(step["prefill_new"]), tuple(step["prefill_ctx"]), int(step["num_decodes"]),
                      int(step["decode_kv_sum"]), int(step["num_sampled"]))
