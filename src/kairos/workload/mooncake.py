"""Loader for the Mooncake trace release (FAST'25, kvcache-ai/Mooncake).

JSON lines `{"timestamp": ms, "input_length", "output_length", "hash_ids"}`. Each
hash id names one 512-token prompt block; equal ids (chained hashes, so they also
imply equal preceding blocks) hold the same tokens and can share KV.
"""

from __future__ import annotations

from itertools import chain, repeat
from pathlib import Path

import numpy as np

from kairos.errors import KairosError
from kairos.workload.spec import RequestSpec, Span, content_keys
from kairos.workload.tracefile import (
    TraceLoad,
    drop_empty_requests,
    json_number,
    read_jsonl,
    select_for_replay,
    without_gc,
)

MOONCAKE_BLOCK = 512


@without_gc
def load_mooncake_jsonl(
    path: str | Path, *, time_scale: float = 1.0, num_requests: int | None = None
) -> TraceLoad:
    """Requests of a Mooncake trace in arrival order, the first arriving at 0.

    Hash id h becomes `Span(content_key("mooncake", h), 0, 512)`; the spans cover
    min(input_length, 512 * len(hash_ids)) tokens, the last one cut short where
    the prompt ends inside its block; prompt tokens past the blocks are unique.
    """
    records, lines = read_jsonl(path)
    arrival_ms, prompt, output, hash_lists = [], [], [], []
    for record, line in zip(records, lines):
        arrival_ms.append(json_number(record, "timestamp", path, line, integer=False))
        prompt.append(json_number(record, "input_length", path, line, integer=True))
        output.append(json_number(record, "output_length", path, line, integer=True))
        hash_lists.append(record.get("hash_ids"))
    flat_ids = _check_hash_ids(hash_lists, path, lines)
    prompt_arr = np.array(prompt, dtype=np.int64)
    output_arr = np.array(output, dtype=np.int64)
    keep, skipped = drop_empty_requests(prompt_arr, output_arr, "zero output tokens")
    rows, arrival = select_for_replay(
        path, np.array(arrival_ms, dtype=np.float64), keep, skipped, time_scale, num_requests, 1e3
    )
    row_list = rows.tolist()
    counts = np.array([len(ids) for ids in hash_lists], dtype=np.int64)
    shared = _block_spans(flat_ids, counts, rows, prompt_arr[rows].tolist())
    requests = [
        RequestSpec(f"mooncake-{row}", t, p, o, spans)
        for row, t, p, o, spans in zip(
            row_list, arrival.tolist(), prompt_arr[rows].tolist(), output_arr[rows].tolist(), shared
        )
    ]
    return TraceLoad(str(path), requests, skipped)


def _check_hash_ids(hash_lists: list, path: str | Path, lines: list[int]) -> np.ndarray:
    """All hash ids, flattened, after checking each row holds a list of ints >= 0."""
    if all(type(ids) is list for ids in hash_lists):
        flat = np.array(list(chain.from_iterable(hash_lists)))
        # One numpy pass checks 300k ids; the per-row walk below only runs to name a culprit.
        if flat.size == 0 or (flat.dtype.kind == "i" and flat.min() >= 0):
            return flat.astype(np.int64)
    for ids, line in zip(hash_lists, lines):
        # type() rather than isinstance(): bools are ints but not hash ids.
        if type(ids) is not list or not all(type(h) is int and 0 <= h < 2**63 for h in ids):
            raise KairosError(f"{path}:{line}: hash_ids must be a list of integers >= 0")
    return np.array(list(chain.from_iterable(hash_lists)), dtype=np.int64)


def _block_spans(
    flat_ids: np.ndarray, counts: np.ndarray, rows: np.ndarray, prompts: list[int]
) -> list[tuple[Span, ...]]:
    """The shared spans of the requests in `rows`, one Span object per distinct full block.

    `flat_ids` holds every row's hash ids back to back, `counts` how many each row has.
    """
    starts = np.cumsum(counts) - counts
    picked = counts[rows]
    # Position in flat_ids of each id of the picked rows, all rows at once: the
    # k-th picked id of a row sits at (row start) + (k - ids picked before the row).
    shift = starts[rows] - (np.cumsum(picked) - picked)
    gather = np.repeat(shift, picked) + np.arange(picked.sum())
    unique, inverse = np.unique(flat_ids[gather], return_inverse=True)
    keys = content_keys("mooncake", unique).tolist()
    blocks = list(map(Span, keys, repeat(0), repeat(MOONCAKE_BLOCK)))
    per_position = [blocks[i] for i in inverse.tolist()]
    shared: list[tuple[Span, ...]] = []
    offset = 0
    for count, prompt in zip(picked.tolist(), prompts):
        full, rest = divmod(min(prompt, MOONCAKE_BLOCK * count), MOONCAKE_BLOCK)
        spans = per_position[offset:offset + full]
        if rest:
            spans.append(Span(per_position[offset + full].key, 0, rest))
        shared.append(tuple(spans))
        offset += count
    return shared
