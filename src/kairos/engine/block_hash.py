"""Content identity of KV blocks: chained hashes, from token ids or from content spans.

A block's hash covers its own tokens and, through the parent hash, every token
before it, so equal hashes mean equal prefixes (as in vLLM's prefix cache).
Python's hash of ints and tuples of ints is not salted, so hashes are the same
in every process. Blocks of a simulated request that hold tokens unique to it
(past its shared spans) are named by the request's uid: only that request can
ever hit them, which happens when it resumes after a preemption.
"""

from __future__ import annotations

from kairos.engine.request import Request

_ROOT = 0x6B616972  # parent hash of the first block
_UNIQUE_TAG = -1


def shareable_blocks(req: Request, block_size: int) -> int:
    """Number of leading full blocks whose content another request could hold too."""
    if req.token_ids is not None:
        return len(req.token_ids) // block_size
    return req.spec.shared_len // block_size


def extend_hashes(req: Request, num_blocks: int, block_size: int) -> list[int]:
    """Make sure `req.block_hashes` covers the first `num_blocks` full blocks; return it."""
    hashes = req.block_hashes
    start = len(hashes)
    if start >= num_blocks:
        return hashes
    parent = hashes[-1] if hashes else _ROOT
    if req.token_ids is not None:
        ids = req.token_ids
        for j in range(start, num_blocks):
            parent = hash((parent, tuple(ids[j * block_size:(j + 1) * block_size])))
            hashes.append(parent)
        return hashes
    shared_blocks = req.spec.shared_len // block_size
    for ident in _span_identities(req, start, min(num_blocks, shared_blocks), block_size):
        parent = hash((parent, ident))
        hashes.append(parent)
    for j in range(max(start, shared_blocks), num_blocks):
        parent = hash((parent, _UNIQUE_TAG, req.uid, j))
        hashes.append(parent)
    return hashes


def _span_identities(req: Request, first: int, stop: int, block_size: int):
    """Yield, for blocks first..stop-1, the (key, start, length) pieces of spans they cover.

    Walks the spans once, so a request with many spans costs O(spans + blocks).
    """
    spans = req.spec.shared
    span_idx = 0
    span_begin = 0  # position of spans[span_idx]'s first token in the request
    for j in range(first, stop):
        pos = j * block_size
        end = pos + block_size
        while span_begin + spans[span_idx].length <= pos:
            span_begin += spans[span_idx].length
            span_idx += 1
        pieces: list[int] = []
        idx, begin = span_idx, span_begin
        while True:
            span = spans[idx]
            lo = max(pos, begin)
            hi = min(end, begin + span.length)
            pieces.extend((span.key, span.start + lo - begin, hi - lo))
            if begin + span.length >= end:
                break
            begin += span.length
            idx += 1
        yield tuple(pieces)
