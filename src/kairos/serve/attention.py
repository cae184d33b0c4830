"""Attention over a paged KV pool for a flattened batch of prefill chunks and decodes.

A step's tokens are flattened into one [tokens, ...] batch (varlen). Per step,
`build_attention_metadata` turns the requests' block tables into tensors once,
and every layer reuses them: a slot per new token (where its K/V is written) and,
per group of requests, the slots of each request's whole context (gathered into
a padded [requests, context] batch) with a causal mask offset by the request's
cached length. Decodes and prefill chunks are grouped apart so that one long
prefill chunk does not pad every decode up to its query length.

The pool is [num_layers, 2, num_blocks, block_size, num_kv_heads, head_dim]; a
token at position p of a request lives at slot table[p // block_size] * block_size
+ p % block_size of its layer's flattened [num_blocks * block_size] view.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True, slots=True)
class AttentionGroup:
    """Requests attended in one padded SDPA call: N query rows and L context slots each."""

    token_idx: torch.Tensor  # [B, N] flattened row of each query (padding repeats the last one)
    ctx_slots: torch.Tensor  # [B, L] pool slot of each context position (padding is masked)
    mask: torch.Tensor  # [B, 1, G*N or 1, L] bool, True where the query may attend
    src: torch.Tensor | None  # rows of the padded output that are real tokens...
    dst: torch.Tensor | None  # ...and their rows in the flattened batch; None: already in order


@dataclass(frozen=True, slots=True)
class AttentionMetadata:
    """Everything attention needs about one step, shared by all layers."""

    positions: torch.Tensor  # [T] absolute position of each new token
    slot_mapping: torch.Tensor  # [T] pool slot where each new token's K/V goes
    groups: tuple[AttentionGroup, ...]
    num_tokens: int


def build_attention_metadata(starts: list[int], lens: list[int], tables: list[list[int]],
                             block_size: int, queries_per_kv: int, device: torch.device
                             ) -> AttentionMetadata:
    """Index tensors for requests computing tokens [starts[i], starts[i] + lens[i]) over `tables[i]`."""
    num_reqs = len(starts)
    start = torch.tensor(starts, dtype=torch.long)
    n = torch.tensor(lens, dtype=torch.long)
    width = max(len(t) for t in tables)
    table = torch.tensor([t + [0] * (width - len(t)) for t in tables], dtype=torch.long)
    first_row = torch.cumsum(n, 0) - n
    num_tokens = sum(lens)
    req = torch.repeat_interleave(torch.arange(num_reqs), n)
    positions = torch.arange(num_tokens) - first_row[req] + start[req]
    slot_mapping = table[req, positions // block_size] * block_size + positions % block_size

    is_decode = n == 1
    selections = [s.nonzero().squeeze(1) for s in (is_decode, ~is_decode)]
    selections = [s for s in selections if s.numel()]
    groups = tuple(
        _group(sel, start, n, first_row, table, block_size, queries_per_kv, len(selections) == 1, device)
        for sel in selections
    )
    return AttentionMetadata(positions.to(device), slot_mapping.to(device), groups, num_tokens)


def _group(sel: torch.Tensor, start: torch.Tensor, n: torch.Tensor, first_row: torch.Tensor,
           table: torch.Tensor, block_size: int, queries_per_kv: int, only_group: bool,
           device: torch.device) -> AttentionGroup:
    s, m = start[sel], n[sel]
    num_q, ctx_len = int(m.max()), int((s + m).max())
    # Padded query rows repeat the request's last token so every mask row has a key (no NaN).
    last = torch.minimum(torch.arange(num_q)[None, :], (m - 1)[:, None])
    token_idx = first_row[sel][:, None] + last
    key_pos = torch.arange(ctx_len)
    ctx_slots = table[sel][:, key_pos // block_size] * block_size + key_pos % block_size
    # Causal with an offset: query at absolute position q sees keys 0..q of its own request.
    mask = key_pos[None, None, :] <= (s[:, None] + last - (s[:, None] > 0).long())[:, :, None]  # [B, N, L]
    if num_q == 1:
        mask = mask[:, None]  # broadcasts over the G query heads folded into the row axis
    else:
        b = mask.shape[0]
        mask = mask[:, None].expand(b, queries_per_kv, num_q, ctx_len).reshape(b, 1, queries_per_kv * num_q, ctx_len)
    src = dst = None
    # With one group holding one request or only single-token requests, rows are already in order.
    if not (only_group and (num_q == 1 or len(sel) == 1)):
        valid = (torch.arange(num_q)[None, :] < m[:, None]).flatten()
        src = valid.nonzero().squeeze(1)
        dst = token_idx.flatten()[src]
        src, dst = src.to(device), dst.to(device)
    return AttentionGroup(token_idx.to(device), ctx_slots.to(device), mask.to(device), src, dst)


def write_kv(kv_layer: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """Store this step's keys and values [T, kv_heads, head_dim] at their pool slots."""
    kv_layer[0].flatten(0, 1).index_copy_(0, slot_mapping, k)
    kv_layer[1].flatten(0, 1).index_copy_(0, slot_mapping, v)


def paged_attention(q: torch.Tensor, kv_layer: torch.Tensor, meta: AttentionMetadata, scale: float
                    ) -> torch.Tensor:
    """Attend queries [T, heads, head_dim] over their requests' cached context; returns [T, heads * head_dim].

    Call after `write_kv` for the step, for every request: a request that hit the
    prefix cache on blocks another request in the same step is still filling reads
    them, and all writes of a layer precede all its reads.
    """
    num_heads, head_dim = q.shape[1], q.shape[2]
    k_pool = kv_layer[0].flatten(0, 1)
    v_pool = kv_layer[1].flatten(0, 1)
    num_kv = k_pool.shape[1]
    groups = num_heads // num_kv
    out = None
    for g in meta.groups:
        b, num_q = g.token_idx.shape
        # Fold each KV head's G query heads into the query axis (rows ordered head-in-group,
        # then token) so SDPA shares K/V across them without repeating the cache.
        qg = (q[g.token_idx].view(b, num_q, num_kv, groups, head_dim)
              .permute(0, 2, 3, 1, 4).reshape(b, num_kv, groups * num_q, head_dim))
        k = k_pool[g.ctx_slots].transpose(1, 2)
        v = v_pool[g.ctx_slots].transpose(1, 2)
        o = F.scaled_dot_product_attention(qg, k, v, attn_mask=g.mask, scale=scale)
        o = (o.view(b, num_kv, groups, num_q, head_dim).permute(0, 3, 1, 2, 4)
             .reshape(b * num_q, num_heads * head_dim))
        if g.src is None:
            return o
        if out is None:
            out = q.new_empty(meta.num_tokens, num_heads * head_dim)
        out.index_copy_(0, g.dst, o[g.src])
    assert out is not None
    return out
