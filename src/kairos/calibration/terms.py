"""What a calibrated step time is fitted on: the terms of one engine step and their values."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kairos.engine.batch_shape import BatchShape
from kairos.perf.attention_groups import prefill_attention_slots

# What a step's time is fitted on, each a count that can only add work:
#   step: 1 per step (scheduling, input preparation, kernel launches of every layer)
#   prefill_tokens: new prompt tokens (projections, MLP, KV writes)
#   prefill_attention_slots: (query, key) pairs the attention kernels compute for the prefill
#     chunks (AttentionLayout.prefill_slots)
#   prefill_chunks: prefill requests in the step (per-request metadata, attention batches)
#   decodes: decode requests (per-request projections, metadata, bookkeeping)
#   decode_attention_slots: KV slots the kernels attend to for the decodes (AttentionLayout.decode_slots)
#   sampled: requests that sample a token (lm_head row, sampler, output handling)
#   mixed: 1 when decodes and prefill chunks share the step (two attention batches, not one)
#   idle_wake: for the first step after the engine sat idle, how cold its caches have
#     gone (see `idle_wake`); 0 for every step of a busy spell. Not a property of the
#     batch: the simulator adds it through CalibratedModel.idle_penalty.
TERMS: tuple[str, ...] = ("step", "prefill_tokens", "prefill_attention_slots", "prefill_chunks", "decodes",
                          "decode_attention_slots", "sampled", "mixed", "idle_wake")
# Terms of profiles from earlier versions, which summed attention pairs and KV lengths instead.
RETIRED_TERMS = ("prefill_context_pairs", "prefill_self_pairs", "decode_kv_tokens")
WAKE_COLUMN = TERMS.index("idle_wake")

# How the measured engine's attention kernels lay out a step's work (a profile's engine.attention):
#   padded: our engine's padded, masked SDPA (kairos.perf.attention_groups), which pays for the
#     longest chunk and the longest KV length of each batch;
#   varlen: variable-length kernels (vLLM, native kernels) that compute exactly the real pairs.
PADDED = "padded"
VARLEN = "varlen"
ATTENTION_KINDS = (PADDED, VARLEN)


@dataclass(frozen=True, slots=True)
class AttentionLayout:
    """What the attention work of a step depends on besides the batch.

    `kind` is PADDED or VARLEN; for padded attention, `block_size` is the KV block
    the executor gathers whole and `min_split_slots` its threshold for splitting an
    attention batch (None: it never splits).
    """

    block_size: int = 1
    min_split_slots: int | None = None
    kind: str = PADDED

    @classmethod
    def of_engine(cls, engine: dict[str, Any]) -> AttentionLayout:
        """From a profile's `engine` settings (attention, block_size, attention_min_split_slots)."""
        return cls(int(engine.get("block_size") or 1), engine.get("attention_min_split_slots"),
                   engine.get("attention") or PADDED)

    def prefill_slots(self, shape: BatchShape) -> int:
        """(query, key) pairs of the prefill chunks.

        Padded: per attention batch, chunks x longest chunk x longest context, since
        masked pairs cost as much as real ones. Varlen: each chunk's new tokens against
        its cached context, plus the causal triangle among themselves.
        """
        if self.kind == VARLEN:
            return sum(n * c + n * (n + 1) // 2 for n, c in zip(shape.prefill_new, shape.prefill_ctx))
        return prefill_attention_slots(shape.prefill_new, shape.prefill_ctx, self.block_size, self.min_split_slots)

    def decode_slots(self, shape: BatchShape) -> int:
        """KV slots the decodes attend to: their summed lengths (varlen), or padded to the longest.

        Padded counts neither the rounding up to whole blocks nor the runs the
        executor cuts very unequal lengths into (a shape holds only the longest):
        kept linear in the step, so that a window of decode steps is predicted
        exactly as step by step. Where the longest is not known, the summed lengths.
        """
        if self.kind == PADDED and shape.decode_kv_max:
            return shape.num_decodes * shape.decode_kv_max
        return shape.decode_kv_sum


def term_values(shape: BatchShape, wake: float = 0.0, layout: AttentionLayout = AttentionLayout()
                ) -> tuple[float, ...]:
    """The value of every term of TERMS for one step (`wake`: its idle_wake value)."""
    new = shape.prefill_new
    mixed = 1.0 if new and shape.num_decodes else 0.0
    return (1.0, float(sum(new)), float(layout.prefill_slots(shape)), float(len(new)), float(shape.num_decodes),
            float(layout.decode_slots(shape)), float(shape.num_sampled), mixed, wake)


def idle_wake(idle_s: float, time_constant_s: float) -> float:
    """How far towards fully cold a step starts after `idle_s` seconds idle: 1 - exp(-idle / tau).

    The first step after a gap runs slower whether the engine slept or spun:
    whatever else runs on the machine evicts its caches, at a rate the time
    constant captures.
    """
    if idle_s <= 0.0 or time_constant_s <= 0.0:
        return 0.0
    return -math.expm1(-idle_s / time_constant_s)
