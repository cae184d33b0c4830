"""Attention over a paged KV pool for a flattened batch of prefill chunks and decodes.

A step's tokens are flattened into one [tokens, ...] batch (varlen). Per step,
`build_attention_metadata` turns the requests' block tables into tensors once,
and every layer reuses them: a slot per new token (where its K/V is written) and,
per group of requests, each request's block table (its context is gathered whole
blocks at a time into a padded [requests, blocks * block_size] batch) with a
causal mask offset by the request's cached length. Decodes and prefill chunks
are grouped apart so that one long prefill chunk does not pad every decode up
to its query length, and a group whose context lengths differ widely is split
so that one long conversation does not pad every short one up to its length,
but only where the padding saved outweighs the extra group's kernel calls.

The pool is [num_layers, 2, num_blocks, block_size, num_kv_heads, head_dim]; a
token at position p of a request lives at slot table[p // block_size] * block_size
+ p % block_size of its layer's flattened [num_blocks * block_size] view.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kairos.perf.attention_groups import split_runs
from kairos.serve.rope import apply_rotary


@dataclass(frozen=True, slots=True)
class AttentionGroup:
    """Requests attended in one padded SDPA call: N query rows and L context slots each."""

    token_idx: torch.Tensor  # [B, N] flattened row of each query (padding repeats the last one)
    ctx_blocks: torch.Tensor  # [B, L / block_size] block table (padding blocks are masked)
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

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv_layer: torch.Tensor, scale: float,
               cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate q [T, heads, head_dim] and k [T, kv_heads, head_dim] by cos/sin [T, head_dim], store k and v
        in the pool, then attend q; returns [T, heads * head_dim]."""
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        write_kv(kv_layer, k, v, self.slot_mapping)
        return paged_attention(q, kv_layer, self, scale)


def build_attention_metadata(starts: list[int], lens: list[int], tables: list[list[int]],
                             block_size: int, queries_per_kv: int, device: torch.device,
                             min_split_slots: int = 0) -> AttentionMetadata:
    """Index tensors for requests computing tokens [starts[i], starts[i] + lens[i]) over `tables[i]`.

    A group is split only where that saves at least `min_split_slots` padded context
    slots (see `min_split_slots`).
    """
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
    ctx = start + n
    selections = []
    for kind in (is_decode, ~is_decode):
        sel = kind.nonzero().squeeze(1)
        if sel.numel():
            selections.extend(_split_by_context(sel, ctx[sel], min_split_slots))
    groups = tuple(
        _group(sel, start, n, first_row, table, block_size, queries_per_kv, len(selections) == 1, device)
        for sel in selections
    )
    return AttentionMetadata(positions.to(device), slot_mapping.to(device), groups, num_tokens)


# A split (kairos.perf.attention_groups) must also save this many bytes of K and V per
# layer. One more group costs about 50 us of kernel calls per layer on a CPU, where
# padding costs about 20 ns per slot of the tiny preset (256 bytes): the split paid off
# from about 2,000 slots saved (1-3 decodes of 100-900 tokens ran up to 25 % slower
# split; 9-33 decodes with one 3,000-token context ran 2-4.5x faster). On a GPU padding
# is much cheaper per byte next to a kernel launch: its threshold, 16x the CPU's, is an
# estimate (unmeasured).
MIN_SPLIT_BYTES = {"cpu": 512 << 10, "cuda": 8 << 20}


def min_split_slots(device: torch.device, num_kv_heads: int, head_dim: int, dtype: torch.dtype) -> int:
    """Padded context slots a group split must save on `device` to pay for its kernel calls."""
    slot_bytes = 2 * num_kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()
    return -(-MIN_SPLIT_BYTES.get(device.type, MIN_SPLIT_BYTES["cuda"]) // slot_bytes)


def _split_by_context(sel: torch.Tensor, ctx: torch.Tensor, min_saved: int) -> list[torch.Tensor]:
    """`sel` as one group, or cut into runs of similar context length when padding would waste much."""
    order = torch.argsort(ctx, stable=True)
    runs = split_runs(ctx[order].tolist(), min_saved)
    if len(runs) == 1:
        return [sel]  # keep batch order: a lone group then needs no scatter back
    return [sel[order[lo:hi]] for lo, hi in runs]


def _group(sel: torch.Tensor, start: torch.Tensor, n: torch.Tensor, first_row: torch.Tensor,
           table: torch.Tensor, block_size: int, queries_per_kv: int, only_group: bool,
           device: torch.device) -> AttentionGroup:
    s, m = start[sel], n[sel]
    num_q = int(m.max())
    num_blocks = -(-int((s + m).max()) // block_size)
    ctx_len = num_blocks * block_size
    # Padded query rows repeat the request's last token so every mask row has a key (no NaN).
    last = torch.minimum(torch.arange(num_q)[None, :], (m - 1)[:, None])
    token_idx = first_row[sel][:, None] + last
    key_pos = torch.arange(ctx_len)
    # Whole blocks, not token slots: one index per block_size tokens makes the gather cheap.
    ctx_blocks = table[sel][:, :num_blocks]
    # Causal with an offset: query at absolute position q sees keys 0..q of its own request.
    mask = key_pos[None, None, :] <= (s[:, None] + last)[:, :, None]  # [B, N, L]
    if num_q == 1:
        mask = mask[:, None]  # broadcasts over the G query heads folded into the row axis
    else:
        b = mask.shape[0]
        rows = queries_per_kv * num_q
        mask = mask[:, None].expand(b, queries_per_kv, num_q, ctx_len).reshape(b, 1, rows, ctx_len)
    src = dst = None
    # With one group holding one request or only single-token requests, rows are already in order.
    if not (only_group and (num_q == 1 or len(sel) == 1)):
        valid = (torch.arange(num_q)[None, :] < m[:, None]).flatten()
        src = valid.nonzero().squeeze(1)
        dst = token_idx.flatten()[src]
        src, dst = src.to(device), dst.to(device)
    return AttentionGroup(token_idx.to(device), ctx_blocks.to(device), mask.to(device), src, dst)


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
    k_blocks, v_blocks = kv_layer[0], kv_layer[1]  # [num_blocks, block_size, kv_heads, head_dim]
    num_kv = k_blocks.shape[2]
    groups = num_heads // num_kv
    out = None
    for g in meta.groups:
        b, num_q = g.token_idx.shape
        # Fold each KV head's G query heads into the query axis (rows ordered head-in-group,
        # then token) so SDPA shares K/V across them without repeating the cache.
        # index_select, not advanced indexing: it copies whole rows and is several times faster on CPU.
        qg = (q.index_select(0, g.token_idx.flatten()).view(b, num_q, num_kv, groups, head_dim)
              .permute(0, 2, 3, 1, 4).reshape(b, num_kv, groups * num_q, head_dim))
        ctx_len = g.mask.shape[-1]
        blocks = g.ctx_blocks.flatten()
        k = k_blocks.index_select(0, blocks).view(b, ctx_len, num_kv, head_dim).transpose(1, 2)
        v = v_blocks.index_select(0, blocks).view(b, ctx_len, num_kv, head_dim).transpose(1, 2)
        o = F.scaled_dot_product_attention(qg, k, v, attn_mask=g.mask, scale=scale)
        o = (o.view(b, num_kv, groups, num_q, head_dim).permute(0, 3, 1, 2, 4)
             .reshape(b * num_q, num_heads * head_dim))
        if g.src is None:
            return o
        if out is None:
            out = q.new_empty(meta.num_tokens, num_heads * head_dim)
        out.index_copy_(0, g.dst, o.index_select(0, g.src))
    assert out is not None
    return out
