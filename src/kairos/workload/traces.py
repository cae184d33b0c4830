"""One entry point for every trace format: detect it, load it, prepare it for replay."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal, get_args

from kairos.errors import KairosError, unknown_name_error
from kairos.workload.azure import AZURE_HEADER, load_azure_csv
from kairos.workload.burstgpt import load_burstgpt_csv
from kairos.workload.kairos_jsonl import load_kairos_jsonl
from kairos.workload.mooncake import load_mooncake_jsonl
from kairos.workload.tracefile import TraceLoad, check_replay_args, first_line

TraceFormat = Literal["auto", "azure", "mooncake", "burstgpt", "kairos"]
TRACE_FORMATS: tuple[str, ...] = get_args(TraceFormat)


def detect_format(path: str | Path) -> str:
    """The format of a trace file, from its extension and first non-blank line."""
    first = first_line(path)
    if not first:
        raise KairosError(f"{path}: file is empty")
    if first.startswith("{") or Path(path).suffix.lower() in (".jsonl", ".json", ".ndjson"):
        try:
            record = json.loads(first)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and "hash_ids" in record:
            return "mooncake"
        if isinstance(record, dict) and "request_id" in record:
            return "kairos"
    else:
        header = [name.strip() for name in first.split(",")]
        if header == AZURE_HEADER:
            return "azure"
        if "Request tokens" in header and "Response tokens" in header:
            return "burstgpt"
    formats = ", ".join(TRACE_FORMATS[1:])
    raise KairosError(
        f"{path}: cannot tell the trace format from its first line; give the format ({formats})"
    )


def load_trace(
    path: str | Path,
    fmt: str = "auto",
    *,
    time_scale: float = 1.0,
    num_requests: int | None = None,
    burstgpt_model: str | None = None,
    burstgpt_log_type: str | None = None,
) -> TraceLoad:
    """Load a trace for replay: specs sorted by arrival, the first at 0.0.

    Arrival times are divided by `time_scale` (2.0 replays twice as fast) and only
    the first `num_requests` arrivals are kept. Request ids are stable:
    "<format>-<data row index>" for external traces, the file's own ids for Kairos
    files. Rows that cannot be replayed are counted in the result's `skipped`.
    """
    if fmt not in TRACE_FORMATS:
        raise unknown_name_error("trace format", fmt, TRACE_FORMATS)
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt != "burstgpt" and (burstgpt_model or burstgpt_log_type):
        raise KairosError(
            f"{path}: the BurstGPT model and log type filters apply only to BurstGPT traces,"
            f" but this is a {fmt} trace"
        )
    match fmt:
        case "azure":
            return load_azure_csv(path, time_scale=time_scale, num_requests=num_requests)
        case "mooncake":
            return load_mooncake_jsonl(path, time_scale=time_scale, num_requests=num_requests)
        case "burstgpt":
            return load_burstgpt_csv(
                path,
                time_scale=time_scale,
                num_requests=num_requests,
                model=burstgpt_model,
                log_type=burstgpt_log_type,
            )
        case _:
            return _replay_kairos(path, time_scale, num_requests)


def _replay_kairos(path: str | Path, time_scale: float, num_requests: int | None) -> TraceLoad:
    """A Kairos file prepared like the other traces (generated files already are).

    A follow-up turn's own arrival_s is ignored by the simulator, so requests are
    ordered by the arrival of the first turn of their `after` chain; the sort is
    stable and the file lists a turn after its predecessor, so every prefix of the
    result still holds the predecessor of each turn it holds.
    """
    check_replay_args(time_scale, num_requests)
    specs = load_kairos_jsonl(path).requests
    chain_start: dict[str, float] = {}
    for spec in specs:
        start = spec.arrival_s if spec.after is None else chain_start[spec.after]
        chain_start[spec.request_id] = start
    specs = sorted(specs, key=lambda spec: chain_start[spec.request_id])[:num_requests]
    first = chain_start[specs[0].request_id]
    if first != 0.0 or time_scale != 1.0:
        specs = [
            dataclasses.replace(spec, arrival_s=(spec.arrival_s - first) / time_scale)
            for spec in specs
        ]
    return TraceLoad(str(path), specs)
