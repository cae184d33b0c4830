"""Loader for the Azure LLM inference trace 2023 (Splitwise, ISCA 2024).

CSV `TIMESTAMP,ContextTokens,GeneratedTokens` with wall-clock timestamps such as
`2023-11-16 18:15:46.6805900` (the 2024 release adds a UTC offset, which is
honoured). The trace carries no prompt content, so every
prompt is unique (no shared spans).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from kairos.workload.spec import RequestSpec
from kairos.workload.tracefile import (
    CsvTable,
    TraceLoad,
    drop_empty_requests,
    read_csv,
    select_for_replay,
    without_gc,
)

AZURE_HEADER = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]


@without_gc
def load_azure_csv(
    path: str | Path, *, time_scale: float = 1.0, num_requests: int | None = None
) -> TraceLoad:
    """Requests of an Azure LLM trace in arrival order, the first arriving at 0."""
    table = read_csv(path, AZURE_HEADER, "an Azure trace", exact=True)
    nanoseconds = _timestamps_ns(table)
    prompt = table.int_column("ContextTokens")
    output = table.int_column("GeneratedTokens")
    keep, skipped = drop_empty_requests(prompt, output, "zero generated tokens")
    rows, arrival = select_for_replay(
        path, nanoseconds, keep, skipped, time_scale, num_requests, 1e9
    )
    requests = [
        RequestSpec(f"azure-{row}", t, p, o)
        for row, t, p, o in zip(
            rows.tolist(), arrival.tolist(), prompt[rows].tolist(), output[rows].tolist()
        )
    ]
    return TraceLoad(str(path), requests, skipped)


def _timestamps_ns(table: CsvTable) -> np.ndarray:
    """TIMESTAMP as nanoseconds after the earliest one (exact in float64 for 104 days)."""
    values = table.column("TIMESTAMP")
    try:
        stamps = _datetimes(values)
    except ValueError:
        stamps = None
    if stamps is None or np.isnat(stamps).any():
        for row, text in enumerate(values):
            try:
                bad = bool(np.isnat(_datetimes([text]))[0])
            except ValueError:
                bad = True
            if bad:
                raise table.error(row, f"TIMESTAMP is not a date and time: {text!r}")
    return (stamps - stamps.min()).astype(np.int64).astype(np.float64)


def _datetimes(values: list[str]) -> np.ndarray:
    with warnings.catch_warnings():
        # numpy converts "+00:00"-style offsets to UTC correctly but warns that
        # datetime64 keeps no zone; only differences between times matter here.
        warnings.simplefilter("ignore", UserWarning)
        return np.array(values, dtype="datetime64[ns]")
