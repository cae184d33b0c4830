"""The simulate HTML report: its sections, `kairos simulate --html`, and the page drawn by headless Chromium."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from kairos.scenario.load import load_scenario
from kairos.scenario.run import run_scenario

from browser import assert_renders, render
from cli_helpers import kairos, one_line_error

needs_plotly = pytest.mark.skipif(importlib.util.find_spec("plotly") is None, reason="plotly is not installed")

FIGURES = ["latency-cdf", "ts-running", "ts-waiting", "ts-kv-usage", "ts-arrivals", "ts-output-tokens"]
SMALL = ["--num-requests", "60", "--rate", "20", "-q"]


@pytest.fixture(scope="module")
def run():
    scenario = load_scenario(None, {
        "workload.num_requests": 200, "workload.rate": 20.0, "cluster.replicas": 2,
        "workload.classes": [{"name": "chat", "share": 3, "slo": {"ttft_ms": 100}}, {"name": "batch"}],
        "workload.tenants": {"count": 2}})
    return run_scenario(scenario, timeseries=True)


@needs_plotly
def test_the_page_has_every_section_and_plotly_once(run):
    from kairos.html.simulate_page import simulate_page

    page = simulate_page(run.report, run.records, run.timeseries)
    assert page.figure_ids == FIGURES
    text = page.html()
    for part in ("Scenario", "Summary", "Latency distributions", "TTFT (ms)", "Running requests",
                 "KV cache usage", "Output tokens, per second", 'id="replicas-table"', 'id="by-class-table"',
                 'id="by-tenant-table"', "llama-3.1-8b", "replica 1"):
        assert part in text, part
    # Self-contained: plotly.js inlined once, nothing loaded from elsewhere.
    assert text.count("plotly.js v") == 1 and "<script src=" not in text
    assert page.html() == simulate_page(run.report, run.records, run.timeseries).html()  # deterministic


@needs_plotly
def test_many_replicas_are_drawn_as_a_band_around_their_mean(run):
    from kairos.html.simulate_page import MAX_LINES, timeseries_figures

    series = run.timeseries
    wide = type(series)(series.interval_s, series.t_s, *(np.tile(getattr(series, name), (1, MAX_LINES))
                                                         for name in ("running", "waiting", "kv_usage", "arrivals",
                                                                      "completions", "output_tokens")))
    for _, figure in timeseries_figures(wide, [f"r{i}" for i in range(wide.num_replicas)]):
        assert [trace.name for trace in figure.data][:2] == ["max", "min"] and len(figure.data) == 3


@needs_plotly
def test_simulate_html_writes_the_page_beside_its_data(tmp_path, capsys):
    code, out, _ = kairos(capsys, "simulate", "--html", str(tmp_path / "page"), *SMALL)
    assert code == 0, out
    assert {p.name for p in (tmp_path / "page").iterdir()} == {"report.html", "report.json", "requests.csv",
                                                               "timeseries.csv"}
    # With -o the data goes there and the page to --html.
    code, _, _ = kairos(capsys, "simulate", "--html", str(tmp_path / "h"), "-o", str(tmp_path / "o"), *SMALL)
    assert code == 0
    assert {p.name for p in (tmp_path / "h").iterdir()} == {"report.html"}
    assert {p.name for p in (tmp_path / "o").iterdir()} == {"report.json", "requests.csv", "timeseries.csv"}
    # The report is that of a run without --html (wall time aside).
    kairos(capsys, "simulate", "-o", str(tmp_path / "plain"), *SMALL)
    reports = [json.loads((tmp_path / d / "report.json").read_text()) for d in ("o", "plain")]
    for report in reports:
        report.pop("wall_time_s")
    assert reports[0] == reports[1]


def test_html_without_plotly_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "plotly", None)  # import plotly raises ImportError
    line = one_line_error(capsys, "simulate", "--html", str(tmp_path), *SMALL)
    assert "pip install 'kairos[html]'" in line
    assert not any(tmp_path.iterdir())  # refused before running


@needs_plotly
def test_the_page_renders_in_headless_chromium(run, tmp_path):
    from kairos.html.simulate_page import write_simulate_page

    page = write_simulate_page(tmp_path, run.report, run.records, run.timeseries)
    assert_renders(render(page, tmp_path), len(FIGURES))
