"""The simulate HTML report: its sections, `kairos simulate --html`, and the page drawn by headless Chromium."""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from kairos.scenario.load import load_scenario
from kairos.scenario.run import run_scenario

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

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = write_simulate_page(tmp_path, run.report, run.records, run.timeseries)
    shot = tmp_path / "shot.png"
    browser = subprocess.run(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
         "--enable-logging=stderr", "--v=0", "--window-size=1400,2000", "--virtual-time-budget=10000",
         f"--screenshot={shot}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    # Console messages come on stderr: a script that threw logs "Uncaught ...".
    errors = [line for line in browser.stderr.splitlines() if ":CONSOLE" in line and "Uncaught" in line]
    assert not errors, errors
    dom = browser.stdout
    # plotly drew every figure: each div holds a plot container with its SVG layers.
    assert dom.count('class="plot-container plotly"') == len(FIGURES)
    assert dom.count('class="main-svg"') >= 2 * len(FIGURES)
    pixels = decode_png(shot.read_bytes())
    assert pixels.shape[:2] == (2000, 1400)
    colours = np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)
    assert len(colours) > 100, f"a blank page: {len(colours)} colours"
    assert (pixels.min(axis=2) < 200).mean() > 0.01  # text and lines, not one background


def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit RGB(A), non-interlaced PNG's pixels (height, width, channels).

    Each filtered byte depends on its left, upper and upper-left neighbours, so pixels are
    unfiltered one anti-diagonal at a time, each diagonal in one numpy pass."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    assert depth == 8 and color in (2, 6) and not interlace, "not an 8-bit RGB(A) PNG"
    channels = 3 if color == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, 1 + width * channels)
    filters = raw[:, 0].astype(np.int32)
    filtered = raw[:, 1:].reshape(height, width, channels).astype(np.int32)
    x = np.zeros((height + 1, width + 1, channels), np.int32)  # a zero row above and column to the left
    for k in range(height + width - 1):
        r = np.arange(max(0, k - width + 1), min(height - 1, k) + 1)
        c = k - r
        left, up, corner = x[r + 1, c], x[r, c + 1], x[r, c]
        p = left + up - corner
        dl, du, dc = np.abs(p - left), np.abs(p - up), np.abs(p - corner)
        paeth = np.where((dl <= du) & (dl <= dc), left, np.where(du <= dc, up, corner))
        kind = filters[r][:, None]
        predicted = np.select([kind == 1, kind == 2, kind == 3, kind == 4], [left, up, (left + up) // 2, paeth], 0)
        x[r + 1, c + 1] = (filtered[r, c] + predicted) % 256
    return x[1:, 1:].astype(np.uint8)
