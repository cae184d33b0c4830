"""Warm a served engine's per-shape kernels before it is measured.

Engines that compile or cache a kernel per batch shape pay for it the first time
each shape runs. On a GPU vLLM captures its CUDA graphs at start; vLLM on CPU
builds its oneDNN GEMM primitives (and torch.compile its graphs) lazily, per
number of tokens in the step: measured on this machine, the first idle prefill
of a new prompt length took 5-15 ms longer than the same length once warm. A
replay models a warm engine, so a run that meets these one-off costs is no
ground truth for it, and a calibration that does fits them into every step.

`warm_up` steps the server through every step size a run can hit: one prompt of
each length 1..max_num_batched_tokens, sent alone (that step's token count is
the prompt's length), then bursts of 1..max_num_seqs short requests (steps
that sample, and decode, that many sequences at once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kairos.bench.client import CompletionClient, completion_body
from kairos.bench.prompts import random_token_ids
from kairos.errors import KairosError
from kairos.workload.spec import RequestSpec

# Output tokens of each request of a decode burst: a few decode steps of the burst's size.
BURST_OUTPUT_TOKENS = 4


@dataclass(frozen=True, slots=True)
class WarmUpPlan:
    """The step sizes to visit: prompt lengths sent one at a time, then burst sizes."""

    prompt_lens: tuple[int, ...]
    burst_sizes: tuple[int, ...]

    @classmethod
    def for_engine(cls, max_num_batched_tokens: int | None, max_num_seqs: int | None,
                   max_model_len: int | None) -> WarmUpPlan:
        """Every step size of an engine with these limits (max_model_len None: not known)."""
        if not max_num_batched_tokens or not max_num_seqs:
            raise KairosError("--warm-up needs the server's --max-num-batched-tokens and --max-num-seqs "
                              "(a Kairos server reports them itself)")
        longest = max_num_batched_tokens if max_model_len is None else min(max_num_batched_tokens, max_model_len - 1)
        return cls(tuple(range(1, longest + 1)), tuple(range(1, max_num_seqs + 1)))


async def warm_up(client: CompletionClient, model: str, vocab_size: int, plan: WarmUpPlan, *, seed: int = 0,
                  progress: Callable[[int, int], None] | None = None) -> None:
    """Send the plan's requests (random token-id prompts, no shared prefixes) through `client`.

    Raises KairosError on the first request the server fails: a server that cannot
    serve the warm-up cannot be measured either."""
    rng = np.random.default_rng(seed)
    total, done = len(plan.prompt_lens) + len(plan.burst_sizes), 0

    async def send(prompt_len: int, output_len: int) -> None:
        prompt = random_token_ids(rng, vocab_size, prompt_len)
        body = completion_body(RequestSpec("warm-up", 0.0, prompt_len, output_len), model, prompt,
                               exact_lengths=True)
        result = await client.stream(body)
        if result.error is not None:
            raise KairosError(f"{client.base_url}: a warm-up request of {prompt_len} prompt tokens failed: "
                              f"{result.error}")

    for prompt_len in plan.prompt_lens:
        await send(prompt_len, 1)
        done += 1
        if progress is not None:
            progress(done, total)
    for size in plan.burst_sizes:
        await asyncio.gather(*(send(1, BURST_OUTPUT_TOKENS) for _ in range(size)))
        done += 1
        if progress is not None:
            progress(done, total)
