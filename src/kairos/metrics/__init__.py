"""Per-request timelines, run summaries, goodput and the report files (no engine imports)."""

from kairos.metrics.itl import ItlCollector
from kairos.metrics.percentiles import PERCENTILES, stats_ms, weighted_percentiles
from kairos.metrics.record import RequestRecord
from kairos.metrics.report import (
    REPORT_SCHEMA,
    REQUEST_COLUMNS,
    build_report,
    write_report,
)
from kairos.metrics.summary import effective_slo, meets_slo, round_floats, summarize
from kairos.metrics.table import render_summary

__all__ = [
    "PERCENTILES",
    "REPORT_SCHEMA",
    "REQUEST_COLUMNS",
    "ItlCollector",
    "RequestRecord",
    "build_report",
    "effective_slo",
    "meets_slo",
    "render_summary",
    "round_floats",
    "stats_ms",
    "summarize",
    "weighted_percentiles",
    "write_report",
]
