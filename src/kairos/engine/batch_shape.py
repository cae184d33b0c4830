"""The shape of one engine step: what the scheduler batched, as step-time models read it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BatchShape:
    """What one engine step computes.

    `prefill_new[i]` new prompt tokens are computed for prefill chunk i on top of
    `prefill_ctx[i]` tokens already in its KV cache (prefix hits and earlier chunks).
    Each of the `num_decodes` decode requests computes one token; `decode_kv_sum`
    is the sum over them of the KV length the token attends to (including itself).
    `num_sampled` is how many requests sample a token this step (decodes plus
    prefills whose last chunk this is). `decode_kv_max` is the longest of the
    decodes' KV lengths (0: not known), what an executor that pads its decodes
    to one length attends to for each of them.
    """

    prefill_new: tuple[int, ...] = ()
    prefill_ctx: tuple[int, ...] = ()
    num_decodes: int = 0
    decode_kv_sum: int = 0
    num_sampled: int = 0
    decode_kv_max: int = 0

    @property
    def num_tokens(self) -> int:
        return sum(self.prefill_new) + self.num_decodes
