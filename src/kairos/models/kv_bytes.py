"""KV-cache bytes of a run of tokens, and how they split over the GPUs of a prefill -> decode transfer.

Unit of sharding: one KV head's K and V over the tokens and full-attention layers
(GQA), or MLA's latent, which counts as a single head that every rank holds.
With H heads, a replica of tensor-parallel size tp holds max(1, H // tp) heads per
GPU (heads split over ranks, replicated when ranks outnumber them: `ModelArch`'s
rule). Moving a request from prefill tp=a to decode tp=b:

    each decode GPU receives what it holds:   max(1, H // b) heads
    each head is needed by max(1, b // H) decode GPUs, so max(b, H) heads go in all;
    spread over the a prefill GPUs (a replicated head is read from each of its
    copies in turn), the busiest prefill GPU sends ceil(max(b, H) / a) heads.

Each GPU has its own link (one NIC per GPU, or its NVLink ports) and every pair
moves at once, so the transfer lasts as long as the busiest GPU's link needs:
`KvShards.bytes_per_link`, the larger of the two sides. MLA with a < b sends the
latent b / a times from each prefill GPU, since every decode rank needs a copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kairos.errors import KairosError
from kairos.models.arch import ModelArch


def kv_bytes(model: ModelArch, tokens: int) -> int:
    """One copy of the KV cache of `tokens` tokens, all heads and full-attention layers, in its stored dtype.

    Like `ModelArch.kv_bytes_per_token`, sliding-window layers are left out: their KV is
    at most a window of tokens per layer.
    """
    _check_tokens(tokens)
    return tokens * model.kv_bytes_per_token


@dataclass(frozen=True, slots=True)
class KvShards:
    """Bytes of one request's KV per GPU when it moves from a prefill replica (tp=a) to a decode replica (tp=b)."""

    tokens: int
    prefill_tp: int
    decode_tp: int
    prefill_bytes_per_gpu: int  # held by each prefill GPU
    decode_bytes_per_gpu: int  # held, hence received, by each decode GPU
    send_bytes_per_gpu: int  # sent by the busiest prefill GPU

    @property
    def bytes_per_link(self) -> int:
        """The largest per-GPU share of the transfer: what sets its duration, all links running at once."""
        return max(self.send_bytes_per_gpu, self.decode_bytes_per_gpu)

    @property
    def bytes_sent(self) -> int:
        """Bytes over all links together (more than one copy when decode ranks replicate heads)."""
        return self.decode_tp * self.decode_bytes_per_gpu


def kv_shards(model: ModelArch, tokens: int, prefill_tp: int, decode_tp: int) -> KvShards:
    """How the KV of `tokens` tokens splits over the GPUs of a prefill (tp=a) -> decode (tp=b) transfer."""
    _check_tokens(tokens)
    model.check_tp(prefill_tp)
    model.check_tp(decode_tp)
    heads = model.num_kv_heads  # 1 for MLA: the latent is one replicated "head"
    head_bytes = kv_bytes(model, tokens) // heads
    sent_heads = math.ceil(max(decode_tp, heads) / prefill_tp)
    return KvShards(
        tokens=tokens,
        prefill_tp=prefill_tp,
        decode_tp=decode_tp,
        prefill_bytes_per_gpu=model.kv_heads_per_gpu(prefill_tp) * head_bytes,
        decode_bytes_per_gpu=model.kv_heads_per_gpu(decode_tp) * head_bytes,
        send_bytes_per_gpu=sent_heads * head_bytes,
    )


def _check_tokens(tokens: int) -> None:
    if tokens < 0:
        raise KairosError(f"a KV transfer needs zero or more tokens, got {tokens}")
