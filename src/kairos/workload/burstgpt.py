"""Loader for the BurstGPT trace (HPMLL/BurstGPT).

CSV `Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`; v3
adds `Session ID,Elapsed time`. Timestamps are seconds from the trace start.
Rows with zero response tokens are failed requests and are skipped (counted in
the result). Prompts carry no content, so nothing is shared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kairos.errors import KairosError, unknown_name_error
from kairos.workload.spec import RequestSpec
from kairos.workload.tracefile import (
    CsvTable,
    TraceLoad,
    drop_empty_requests,
    read_csv,
    select_for_replay,
    without_gc,
)

BURSTGPT_COLUMNS = ["Timestamp", "Model", "Request tokens", "Response tokens", "Log Type"]
SESSION_COLUMN = "Session ID"


@without_gc
def load_burstgpt_csv(
    path: str | Path,
    *,
    time_scale: float = 1.0,
    num_requests: int | None = None,
    model: str | None = None,
    log_type: str | None = None,
) -> TraceLoad:
    """Requests of a BurstGPT trace in arrival order, the first arriving at 0.

    `model` ("ChatGPT", "GPT-4") and `log_type` ("Conversation log", "API log")
    keep only matching rows (case-insensitive); a value absent from the file is
    an error listing the values present. A `Session ID` column sets session_id.
    """
    table = read_csv(path, BURSTGPT_COLUMNS, "a BurstGPT trace", exact=False)
    keep = _matches(table, "Model", model, "BurstGPT model") & _matches(
        table, "Log Type", log_type, "BurstGPT log type"
    )
    seconds = table.float_column("Timestamp")
    prompt = table.int_column("Request tokens")
    output = table.int_column("Response tokens")
    usable, skipped = drop_empty_requests(
        prompt[keep], output[keep], "zero response tokens (failed requests)"
    )
    keep[keep] = usable
    rows, arrival = select_for_replay(path, seconds, keep, skipped, time_scale, num_requests)
    row_list = rows.tolist()
    if SESSION_COLUMN in table.header:
        column = table.column(SESSION_COLUMN)
        sessions = [column[row].strip() or None for row in row_list]
    else:
        sessions = [None] * len(row_list)
    requests = [
        RequestSpec(f"burstgpt-{row}", t, p, o, session_id=session)
        for row, t, p, o, session in zip(
            row_list, arrival.tolist(), prompt[rows].tolist(), output[rows].tolist(), sessions
        )
    ]
    return TraceLoad(str(path), requests, skipped)


def _matches(table: CsvTable, name: str, wanted: str | None, kind: str) -> np.ndarray:
    """Mask of rows whose column `name` equals `wanted` ignoring case (all rows if None)."""
    if wanted is None:
        return np.ones(len(table.rows), dtype=bool)
    values = np.array([text.strip().casefold() for text in table.column(name)])
    mask = values == wanted.strip().casefold()
    if not mask.any():
        # Matching ignores case, so the hint may too (unknown_name_error compares as is).
        present = set(values.tolist())
        raise KairosError(f"{table.path}: {unknown_name_error(kind, wanted, present)}")
    return mask
