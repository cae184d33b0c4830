"""The step-time model contract: how long one engine step takes for a batch shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class BatchShape:
    """What one engine step computes.

    `prefill_new[i]` new prompt tokens are computed for prefill chunk i on top of
    `prefill_ctx[i]` tokens already in its KV cache (prefix hits and earlier chunks).
    Each of the `num_decodes` decode requests computes one token; `decode_kv_sum`
    is the sum over them of the KV length the token attends to (including itself).
    `num_sampled` is how many requests sample a token this step (decodes plus
    prefills whose last chunk this is).
    """

    prefill_new: tuple[int, ...] = ()
    prefill_ctx: tuple[int, ...] = ()
    num_decodes: int = 0
    decode_kv_sum: int = 0
    num_sampled: int = 0

    @property
    def num_tokens(self) -> int:
        return sum(self.prefill_new) + self.num_decodes


class StepTimeModel(Protocol):
    """Predicts the wall time in seconds of engine steps.

    `decode_window(n, kv_sum, k)` returns the durations of k consecutive
    pure-decode steps of n requests where step i (0-based) has decode_kv_sum =
    kv_sum + i * n. The engine uses it for every pure-decode step, a single one
    included, so that the many-steps-at-once fast path is bit-identical to
    stepping one iteration at a time. `step_time` is used for steps that carry
    prefill work.
    """

    name: str

    def step_time(self, shape: BatchShape) -> float: ...

    def decode_window(self, num_decodes: int, decode_kv_sum: int, steps: int) -> np.ndarray: ...
