"""Content identity of KV blocks: chained hashes, from token ids or from content spans.

Equal block hashes mean equal prefixes up to the end of that block, as in vLLM's
prefix cache. With token ids (real serving) each block hashes its ids and its
parent's hash. With spans (simulation) a block ending at position e is named by
the prefix [0, e) written canonically: the chain of the whole spans before the
span holding token e-1, then that span's key, start and the extent of it used.
Requests built from the same span sequence therefore share block hashes, and
all of a request's block hashes come from one numpy expression, not a Python
loop per block. (Two different span splittings of the same content, such as one
span of 200 tokens versus two of 100, are not recognised as equal.)

Blocks of a simulated request past its shared spans hold tokens unique to it and
are named by the request's uid: only that request can ever hit them, which
happens when it resumes after a preemption.
"""

from __future__ import annotations

import numpy as np

from kairos.engine.request import Request
from kairos.hashing import MASK64, mix64, mix64_array
from kairos.workload.spec import RequestSpec, Span

_ROOT = 0x6B616972  # parent hash of the first block
_UNIQUE = 0x756E6971  # seeds the hashes of blocks unique to one request


def shareable_blocks(req: Request, block_size: int) -> int:
    """Number of leading full blocks whose content another request could hold too."""
    if req.token_ids is not None:
        return len(req.token_ids) // block_size
    return req.shared_len // block_size


def extend_hashes(req: Request, num_blocks: int, block_size: int) -> list[int]:
    """Make sure `req.block_hashes` covers the first `num_blocks` full blocks; return it."""
    hashes = req.block_hashes
    if len(hashes) >= num_blocks:
        return hashes
    if req.token_ids is not None:
        parent = hashes[-1] if hashes else _ROOT
        ids = req.token_ids
        for j in range(len(hashes), num_blocks):
            # Unsigned, like the span hashes: the pool stores hashes in a uint64 array.
            parent = hash((parent, tuple(ids[j * block_size:(j + 1) * block_size]))) & MASK64
            hashes.append(parent)
        return hashes
    if not hashes:
        hashes.extend(span_block_hashes(req.spec.shared, req.shared_len // block_size, block_size))
    if num_blocks > len(hashes):
        seed = np.uint64(mix64(_UNIQUE ^ req.uid))
        index = np.arange(len(hashes), num_blocks, dtype=np.uint64)
        hashes.extend(mix64_array(seed ^ mix64_array(index)).tolist())
    return hashes


def span_block_hashes(spans: tuple[Span, ...], num_blocks: int, block_size: int) -> list[int]:
    """Hashes of the first `num_blocks` full blocks of a token sequence described by spans."""
    if num_blocks <= 0:
        return []
    lengths = np.fromiter((s.length for s in spans), dtype=np.int64, count=len(spans))
    span_ends = np.cumsum(lengths)
    # chains[i]: the whole spans 0..i-1 (a short Python loop: one step per span).
    chains = np.empty(len(spans), dtype=np.uint64)
    chain = _ROOT
    for i, span in enumerate(spans):
        chains[i] = chain
        chain = mix64(mix64(mix64(chain ^ (span.key & 0xFFFFFFFFFFFFFFFF)) ^ span.start) ^ span.length)
    keys = np.fromiter((s.key & 0xFFFFFFFFFFFFFFFF for s in spans), dtype=np.uint64, count=len(spans))
    starts = np.fromiter((s.start for s in spans), dtype=np.uint64, count=len(spans))
    block_ends = (np.arange(1, num_blocks + 1, dtype=np.int64)) * block_size
    holder = np.searchsorted(span_ends, block_ends, side="left")
    extents = (block_ends - (span_ends[holder] - lengths[holder])).astype(np.uint64)
    h = mix64_array(chains[holder] ^ keys[holder])
    h = mix64_array(h ^ starts[holder])
    return mix64_array(h ^ extents).tolist()


def prompt_prefix_hashes(spec: RequestSpec, block_size: int) -> list[int]:
    """Hashes of the full prompt blocks of `spec` that other requests could share (for routers)."""
    if spec.prompt_token_ids is not None:
        probe = Request(spec, uid=-1, arrival_s=0.0)
        return list(extend_hashes(probe, spec.prompt_len // block_size, block_size))
    count = min(spec.shared_len, spec.prompt_len) // block_size
    return span_block_hashes(spec.shared, count, block_size)
