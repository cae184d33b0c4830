"""report.json schema, requests.csv layout, byte-identical output and the terminal view."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from rich.console import Console

from kairos.metrics import (
    REPORT_SCHEMA,
    REQUEST_COLUMNS,
    ItlCollector,
    RequestRecord,
    build_report,
    render_summary,
    summarize,
    write_report,
)
from kairos.workload.spec import SLO

SUMMARY_KEYS = {
    "num_requests", "completed", "rejected", "duration_s", "throughput", "ttft_ms",
    "tpot_ms", "itl_ms", "e2e_ms", "queue_ms", "goodput", "preemptions",
    "prefix_cache_hit_rate",
}


def make_records() -> list[RequestRecord]:
    # Listed out of arrival order on purpose: the CSV must sort them.
    return [
        RequestRecord("r2", 0.2, 50, 4, 0.25, 0.3, 0.9, cached_tokens=16, replica=1),
        RequestRecord("r1", 0.1, 80, 1, 0.1, 0.2, 0.2, preemptions=1, slo=SLO(ttft_ms=50)),
        RequestRecord("r3", 0.3, 70, 0, rejected_reason="prompt too long", replica=1),
    ]


def make_report(records: list[RequestRecord], replicas: int = 2) -> dict:
    itl = ItlCollector()
    itl.add_repeated(np.array([0.2, 0.2, 0.2]), 1)
    summary = summarize(records, itl, SLO(ttft_ms=500), prefix_cache_hit_rate=0.1)
    scenario = {"seed": 0, "cluster": {"replicas": replicas, "router": "round_robin"}}
    stats = [{"steps": 10 + i, "kv": {"usage": 0.5}} for i in range(replicas)]
    return build_report(scenario, summary, stats, wall_time_s=0.123456789)


def test_report_has_schema_keys():
    report = make_report(make_records())
    assert report["schema"] == REPORT_SCHEMA == "kairos.report/v1"
    assert set(report) == {"schema", "scenario", "summary", "replicas", "wall_time_s"}
    assert set(report["summary"]) == SUMMARY_KEYS
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "queue_ms"):
        assert set(report["summary"][key]) == {"mean", "p50", "p90", "p99"}
    assert set(report["summary"]["throughput"]) == {
        "requests_per_s", "input_tokens_per_s", "output_tokens_per_s",
    }
    assert set(report["summary"]["goodput"]) == {"requests_per_s", "slo_attainment"}
    assert report["wall_time_s"] == 0.123457


def test_extra_sections_cannot_replace_schema_keys():
    summary = summarize([], ItlCollector(), None)
    report = build_report({}, summary, [], 0.0, extra={"autoscaler": {"events": 0}})
    assert report["autoscaler"] == {"events": 0}
    with pytest.raises(ValueError, match="summary"):
        build_report({}, summary, [], 0.0, extra={"summary": {}})


def test_write_report_files(tmp_path):
    records = make_records()
    report_path, requests_path = write_report(tmp_path / "run", make_report(records), records)
    assert json.loads(report_path.read_text())["schema"] == REPORT_SCHEMA
    rows = list(csv.reader(requests_path.open()))
    assert tuple(rows[0]) == REQUEST_COLUMNS
    assert [row[0] for row in rows[1:]] == ["r1", "r2", "r3"]
    r2 = dict(zip(rows[0], rows[2], strict=True))
    assert r2["ttft_ms"] == "100.000000"
    assert r2["tpot_ms"] == "200.000000"
    assert r2["cached_tokens"] == "16" and r2["replica"] == "1"
    r3 = dict(zip(rows[0], rows[3], strict=True))
    assert r3["finish_s"] == "" and r3["ttft_ms"] == ""
    assert r3["rejected_reason"] == "prompt too long"


def test_same_input_gives_same_bytes(tmp_path):
    first = write_report(tmp_path / "a", make_report(make_records()), make_records())
    second = write_report(tmp_path / "b", make_report(make_records()), make_records())
    for path_a, path_b in zip(first, second, strict=True):
        assert path_a.read_bytes() == path_b.read_bytes()


def test_render_summary_shows_key_rows_and_replicas():
    console = Console(width=120, record=True)
    console.print(render_summary(make_report(make_records(), replicas=2)))
    text = console.export_text()
    for label in ("Requests", "Throughput", "Goodput", "TTFT", "TPOT", "ITL", "E2E", "Queue",
                  "Preemptions", "Prefix cache", "Replicas", "kv.usage"):
        assert label in text
    single = Console(width=120, record=True)
    single.print(render_summary(make_report(make_records(), replicas=1)))
    assert "Replicas" not in single.export_text()


def test_classes_and_tenants_reach_the_csv_and_the_table(tmp_path):
    records = make_records()
    records[0].slo_class, records[0].tenant = "batch", "t1"
    records[1].slo_class, records[1].tenant = "interactive", "t0"
    report = make_report(records, replicas=1)
    _, requests_path = write_report(tmp_path, report, records)
    rows = {row["request_id"]: row for row in csv.DictReader(requests_path.open())}
    assert (rows["r2"]["tenant"], rows["r2"]["slo_class"]) == ("t1", "batch")
    assert (rows["r3"]["tenant"], rows["r3"]["slo_class"]) == ("", "")
    console = Console(width=140, record=True)
    console.print(render_summary(report))
    text = console.export_text()
    for label in ("By class", "By tenant", "interactive", "batch", "(none)", "t0", "t1"):
        assert label in text
    plain = Console(width=140, record=True)
    plain.print(render_summary(make_report(make_records(), replicas=1)))
    assert "By class" not in plain.export_text()
