"""A served engine's front-end time, measured from outside the server.

The client's TTFT of a request sent to an idle server is the front-end's time
(HTTP, parsing, tokenization, handing the request to the engine core, and
streaming the first token back) plus the engine's queue and prefill time. vLLM
reports the latter two per request in its Prometheus histograms
(`vllm:request_queue_time_seconds`, `vllm:request_prefill_time_seconds`, both
timed in the engine core). Requests sent one at a time, with /metrics read
before and after each, give each request's front-end time; a line over prompt
lengths splits it into a per-request and a per-prompt-token part.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from kairos.bench.client import CompletionClient, completion_body
from kairos.bench.prompts import random_token_ids
from kairos.bench.server_counters import phase_totals
from kairos.errors import KairosError
from kairos.workload.spec import RequestSpec

PROMPT_LENS = (16, 128, 512, 2048)
REPEATS = 12


@dataclass(frozen=True, slots=True)
class FrontEndSample:
    """One idle request: its prompt length, the client's TTFT and the engine's share of it."""

    prompt_len: int
    client_ttft_s: float
    engine_s: float

    @property
    def front_end_s(self) -> float:
        return self.client_ttft_s - self.engine_s


async def probe_front_end(base_url: str, model: str, vocab_size: int, max_model_len: int, *,
                          prompt_lens: tuple[int, ...] = PROMPT_LENS, repeats: int = REPEATS, seed: int = 0,
                          timeout_s: float = 120.0) -> list[FrontEndSample]:
    """Send `repeats` one-token requests per prompt length, one at a time, and split each
    client TTFT into the engine's time and the rest. The server must be otherwise idle."""
    rng = np.random.default_rng(seed)
    lens = sorted({max(1, min(n, max_model_len - 1)) for n in prompt_lens})
    samples: list[FrontEndSample] = []
    async with CompletionClient(base_url, timeout_s=timeout_s) as client:
        before = await _totals(client, base_url)
        for _ in range(repeats):
            for prompt_len in lens:
                prompt = random_token_ids(rng, vocab_size, prompt_len)
                body = completion_body(RequestSpec("front-end", 0.0, prompt_len, 1), model, prompt,
                                       exact_lengths=True)
                result = await client.stream(body)
                if result.error is not None or result.first_token_ts is None:
                    raise KairosError(f"{base_url}: a front-end probe failed: {result.error or 'no tokens'}")
                after = await _totals(client, base_url)
                if after["prefill_count"] - before["prefill_count"] != 1:
                    raise KairosError(f"{base_url} served other requests during the probe: measure an idle server")
                engine_s = sum(after[f"{p}_sum"] - before[f"{p}_sum"] for p in ("queue", "prefill"))
                samples.append(FrontEndSample(prompt_len, result.first_token_ts - result.sent_ts, engine_s))
                before = after
    return samples


async def _totals(client: CompletionClient, base_url: str) -> dict[str, float]:
    text = await client.get_text("/metrics")
    if text is None or "vllm:request_prefill_time_seconds" not in text:
        raise KairosError(f"{base_url}/metrics has no vllm:request_prefill_time_seconds: "
                          "the front-end probe needs vLLM's per-request engine timings")
    return phase_totals(text)


def fit_front_end(samples: list[FrontEndSample]) -> tuple[float, float]:
    """(seconds per request, seconds per prompt token): a line through the median front-end
    time of each prompt length; a slope that comes out negative is noise, so then the
    overall median with no slope."""
    lens = sorted({s.prompt_len for s in samples})
    medians = [statistics.median(s.front_end_s for s in samples if s.prompt_len == n) for n in lens]
    if len(lens) < 2:
        return max(0.0, medians[0]), 0.0
    slope, intercept = np.polyfit(lens, medians, 1)
    if slope < 0:
        return max(0.0, statistics.median(s.front_end_s for s in samples)), 0.0
    return max(0.0, float(intercept)), float(slope)
