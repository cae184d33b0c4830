"""The run report: report.json (schema kairos.report/v1) and requests.csv."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kairos.metrics.record import RequestRecord
from kairos.metrics.summary import round_floats

REPORT_SCHEMA = "kairos.report/v1"
REPORT_FILE = "report.json"
REQUESTS_FILE = "requests.csv"
REQUEST_COLUMNS: tuple[str, ...] = (
    "request_id", "arrival_s", "first_scheduled_s", "first_token_s", "finish_s",
    "input_tokens", "output_tokens", "cached_tokens", "preemptions", "replica",
    "ttft_ms", "tpot_ms", "e2e_ms", "rejected_reason", "tenant", "slo_class",
)


def build_report(
    scenario: dict[str, Any],
    summary: dict[str, Any],
    replicas: list[dict[str, Any]],
    wall_time_s: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble report.json's content; `replicas` holds each replica's stats as given.

    `extra` adds top-level sections (it may not replace the schema's own keys).
    `wall_time_s` is the only field that differs between identical runs.
    """
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "scenario": scenario,
        "summary": summary,
        "replicas": round_floats(list(replicas)),
        "wall_time_s": round_floats(float(wall_time_s)),
    }
    if extra:
        clash = sorted(report.keys() & extra.keys())
        if clash:
            raise ValueError(f"extra report sections would replace {', '.join(clash)}")
        report.update(extra)
    return report


def write_report(
    out_dir: str | Path, report: dict[str, Any], records: Sequence[RequestRecord]
) -> tuple[Path, Path]:
    """Write report.json and requests.csv under `out_dir` (created); return their paths.

    Both files are byte-identical for identical inputs: sorted JSON keys, no NaN,
    fixed-precision floats and rows in arrival order (ties keep record order).
    """
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    report_path = directory / REPORT_FILE
    text = json.dumps(report, indent=2, sort_keys=True, allow_nan=False)
    report_path.write_text(text + "\n", encoding="utf-8")
    requests_path = directory / REQUESTS_FILE
    with requests_path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(REQUEST_COLUMNS)
        for record in sorted(records, key=lambda r: r.arrival_s):
            writer.writerow(_request_row(record))
    return report_path, requests_path


def _request_row(record: RequestRecord) -> list[str | int]:
    return [
        record.request_id,
        _fixed(record.arrival_s),
        _fixed(record.first_scheduled_s),
        _fixed(record.first_token_s),
        _fixed(record.finish_s),
        record.input_tokens,
        record.output_tokens,
        record.cached_tokens,
        record.preemptions,
        record.replica,
        _fixed_ms(record.ttft_s),
        _fixed_ms(record.tpot_s),
        _fixed_ms(record.e2e_s),
        record.rejected_reason or "",
        record.tenant or "",
        record.slo_class or "",
    ]


def _fixed(value: float | None) -> str:
    """Six decimals; empty for a missing time, so the column stays numeric."""
    return "" if value is None else f"{value:.6f}"


def _fixed_ms(value_s: float | None) -> str:
    return "" if value_s is None else f"{value_s * 1000.0:.6f}"
