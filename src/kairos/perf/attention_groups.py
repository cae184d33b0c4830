"""How the real executor batches a step's attention: requests of one kind (decodes, or
prefill chunks of more than one token) share a padded SDPA call, cut into a few runs of
similar context length where that saves enough padding.

Torch-free, and in perf (the step-pricing layer) so that both the executor
(kairos.serve.attention) and the calibrated step-time model, which counts the padded
work the executor really does, use this one rule.
"""

from __future__ import annotations

from collections.abc import Sequence

# At most this many padded batches per kind of request: each costs a few more kernel calls.
MAX_GROUPS_PER_KIND = 4
# A split must cut the padded context (requests x longest context) by at least this share,
# and by at least a device's `min_split_slots` (kairos.serve.attention.min_split_slots).
MIN_SPLIT_SAVING = 0.25


def split_runs(lengths: Sequence[int], min_saved: int) -> list[tuple[int, int]]:
    """Cut ascending context `lengths` into runs [lo, hi) that become one padded batch each."""
    return _cuts(lengths, 0, len(lengths), MAX_GROUPS_PER_KIND, min_saved)


def _cuts(lengths: Sequence[int], lo: int, hi: int, max_runs: int, min_saved: int) -> list[tuple[int, int]]:
    """Split lengths[lo:hi] at the point that most reduces count x max, recursively."""
    if max_runs <= 1 or hi - lo < 2:
        return [(lo, hi)]
    whole = (hi - lo) * lengths[hi - 1]
    best, cut = whole, lo
    for j in range(lo + 1, hi):
        cost = (j - lo) * lengths[j - 1] + (hi - j) * lengths[hi - 1]
        if cost < best:
            best, cut = cost, j
    if best > (1 - MIN_SPLIT_SAVING) * whole or whole - best < min_saved:
        return [(lo, hi)]
    half = max_runs // 2
    return _cuts(lengths, lo, cut, half, min_saved) + _cuts(lengths, cut, hi, max_runs - half, min_saved)


def prefill_attention_slots(prefill_new: Sequence[int], prefill_ctx: Sequence[int], block_size: int,
                            min_split_slots: int | None) -> int:
    """(query row, key slot) pairs the executor's padded SDPA computes for a step's prefill chunks.

    Per batch: chunks x longest chunk x longest context, rounded up to whole KV
    blocks (the executor gathers whole blocks). Masked pairs cost as much as real
    ones in a dense SDPA. Chunks of one token batch with the decodes and count zero
    here. `min_split_slots` None: never split.
    """
    chunks = [(c + n, n) for n, c in zip(prefill_new, prefill_ctx) if n > 1]
    if not chunks:
        return 0
    if len(chunks) == 1:
        end, n = chunks[0]
        return n * -(-end // block_size) * block_size
    chunks.sort(key=lambda chunk: chunk[0])  # stable, as the executor's argsort
    ends = [end for end, _ in chunks]
    runs = [(0, len(chunks))] if min_split_slots is None else split_runs(ends, min_split_slots)
    return sum((hi - lo) * max(n for _, n in chunks[lo:hi]) * (-(-ends[hi - 1] // block_size) * block_size)
               for lo, hi in runs)
