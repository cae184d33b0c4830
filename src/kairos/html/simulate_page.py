"""The `kairos simulate --html` page: the scenario, its summary, latency CDFs, per-replica time series
and tables, from a run's report, request records and time series."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kairos.html.page import Page, require_plotly
from kairos.metrics.record import RequestRecord
from kairos.metrics.timeseries import TimeSeries

PAGE_FILE = "report.html"
# Above this many replicas a time series shows their min, mean and max instead of one line each.
MAX_LINES = 16
# Most points drawn per latency CDF: beyond it the curve is sampled at evenly spaced ranks.
MAX_CDF_POINTS = 2000
# A rate is averaged over this fraction of the run's samples (arrivals are too sparse per sample).
RATE_WINDOW_FRACTION = 1 / 50
LATENCIES = (("ttft", "TTFT"), ("tpot", "TPOT"), ("e2e", "E2E"))


def write_simulate_page(out_dir: str | Path, report: dict, records: Sequence[RequestRecord],
                        series: TimeSeries | None) -> Path:
    """Write report.html under `out_dir`; returns its path."""
    return simulate_page(report, records, series).write(Path(out_dir) / PAGE_FILE)


def simulate_page(report: dict, records: Sequence[RequestRecord], series: TimeSeries | None) -> Page:
    """The simulate report as a page (figures need plotly: a one-line error without it)."""
    require_plotly()
    page = Page(f"Kairos simulation: {_model_line(report['deployment'])}")
    page.heading("Scenario")
    page.facts(scenario_facts(report))
    add_run(page, report, records, series)
    return page


def add_run(page: Page, report: dict, records: Sequence[RequestRecord], series: TimeSeries | None) -> None:
    """A run's summary, latency CDFs, per-replica time series and tables, appended to `page`."""
    summary = report["summary"]
    page.heading("Summary")
    page.facts(summary_facts(summary))
    page.heading("Latency distributions")
    page.figure("latency-cdf", latency_cdfs(records))
    page.heading("Per-replica time series")
    labels = [_replica_label(r) for r in report["replicas"]]
    if series is None or len(series.t_s) == 0:
        page.note("No time series was recorded for this run.")
    else:
        for div_id, figure in timeseries_figures(series, labels):
            page.figure(div_id, figure)
    page.heading("Replicas")
    page.table("replicas-table", *replica_table(report["replicas"], summary["duration_s"]))
    for key, title in (("by_class", "By request class"), ("by_tenant", "By tenant")):
        if key in summary:
            page.heading(title)
            page.table(f"{key.replace('_', '-')}-table", *group_table(summary[key]))


# ---- header ------------------------------------------------------------------------------
def scenario_facts(report: dict) -> list[tuple[str, str]]:
    """Model, hardware, engine, cluster and workload essentials."""
    scenario, deployment = report["scenario"], report["deployment"]
    pools = [(f"{name} pool", deployment[name]) for name in ("prefill", "decode")] if "decode" in deployment \
        else [("deployment", deployment)]
    facts = [(label, f"{_model_line(d)} on {_hardware_line(d)}, perf {d['perf']}") for label, d in pools]
    engine, cluster, slo = scenario["engine"], scenario["cluster"], scenario["slo"]
    return facts + [
        ("policy", engine["policy"]),
        ("router", cluster["router"]),
        ("engine", f"max_num_seqs {engine['max_num_seqs']}, max_num_batched_tokens "
                   f"{engine['max_num_batched_tokens']}, prefix caching "
                   f"{'on' if engine['enable_prefix_caching'] else 'off'}"),
        ("workload", _workload_line(scenario["workload"])),
        ("SLO", ", ".join(f"{k} {v:g} ms" for k, v in slo.items() if v is not None) or "none"),
        ("seed", str(scenario["seed"])),
    ]


def summary_facts(summary: dict) -> list[tuple[str, str]]:
    """The run's headline numbers."""
    tp, good = summary["throughput"], summary["goodput"]
    facts = [
        ("requests", f"{summary['completed']:,} completed of {summary['num_requests']:,}"
                     f" ({summary.get('rejected', 0):,} rejected)"),
        ("duration", f"{summary['duration_s']:.2f} s"),
        ("throughput", f"{tp['requests_per_s']:.3g} req/s, {tp['input_tokens_per_s']:,.0f} input tok/s, "
                       f"{tp['output_tokens_per_s']:,.0f} output tok/s"),
    ]
    for key, name in (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("itl_ms", "ITL"), ("e2e_ms", "E2E"),
                      ("queue_ms", "queue")):
        stats = summary.get(key)
        if stats:
            facts.append((name, ", ".join(f"{k} {v:.4g}" for k, v in stats.items()) + " ms"))
    facts += [
        ("goodput", f"{good['requests_per_s']:.3g} req/s, SLO attainment {good['slo_attainment']:.1%}"),
        ("preemptions", f"{summary['preemptions']:,}"),
        ("prefix cache hit rate", f"{summary['prefix_cache_hit_rate']:.1%}"),
    ]
    return facts


def _model_line(d: dict) -> str:
    if "decode" in d:
        return _model_line(d["decode"])
    return f"{d['model']} ({d['weights_dtype']})"


def _hardware_line(d: dict) -> str:
    layout = f"tp {d['tp']}" + (f" x dp {d['dp']}" if d["dp"] > 1 else "") + (", ep" if d["ep"] else "")
    return (f"{d['replicas']} x {d['gpus_per_replica']} {d['gpu']} ({layout}), "
            f"{d['kv_blocks_per_replica']:,} KV blocks per replica")


def _workload_line(w: dict) -> str:
    if w["kind"] == "trace":
        line = f"trace {Path(w['path']).name}" + (f" x{w['time_scale']:g} speed" if w["time_scale"] != 1 else "")
    else:
        line = f"synthetic, {w['arrival']} arrivals at {w['rate']:g}/s"
    if w.get("num_requests"):
        line += f", {w['num_requests']:,} requests"
    if w.get("concurrency"):
        line += f", at most {w['concurrency']} in flight"
    return line


def _replica_label(replica: dict) -> str:
    pool = replica.get("pool")
    return f"replica {replica['index']}" + (f" ({pool})" if pool else "")


# ---- figures -----------------------------------------------------------------------------
def latency_cdfs(records: Sequence[RequestRecord]) -> Any:
    """TTFT, TPOT and E2E of the completed requests as empirical CDFs, side by side."""
    from plotly import graph_objects as go
    from plotly.subplots import make_subplots

    completed = [r for r in records if r.finished]
    figure = make_subplots(rows=1, cols=3, subplot_titles=[f"{name} (ms)" for _, name in LATENCIES])
    for col, (key, name) in enumerate(LATENCIES, start=1):
        values = np.sort([v * 1e3 for r in completed if (v := getattr(r, f"{key}_s")) is not None])
        x, y = _cdf_points(values)
        figure.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name, showlegend=False), row=1, col=col)
        figure.update_xaxes(title_text="ms", row=1, col=col)
    figure.update_yaxes(title_text="fraction of requests", range=[0, 1], row=1, col=1)
    figure.update_layout(height=360, margin={"t": 40, "b": 40, "l": 60, "r": 20})
    return figure


def _cdf_points(values: np.ndarray) -> tuple[list[float], list[float]]:
    n = len(values)
    ranks = np.unique(np.linspace(0, n - 1, MAX_CDF_POINTS).round().astype(int)) if n > MAX_CDF_POINTS \
        else np.arange(n)
    return values[ranks].tolist(), ((ranks + 1) / n).tolist()


def timeseries_figures(series: TimeSeries, labels: Sequence[str]) -> list[tuple[str, Any]]:
    """(div id, figure) of each sampled quantity over time: running, waiting, KV usage, rates."""
    window = max(1, round(len(series.t_s) * RATE_WINDOW_FRACTION))
    over = f"per second over the preceding {window * series.interval_s:.3g} s"
    quantities = [
        ("ts-running", "Running requests", series.running, ""),
        ("ts-waiting", "Waiting requests", series.waiting, ""),
        ("ts-kv-usage", "KV cache usage (blocks in use)", series.kv_usage, ".1~%"),
        ("ts-arrivals", f"Arrivals, {over}", series.rate(series.arrivals, window), ""),
        ("ts-output-tokens", f"Output tokens, {over}", series.rate(series.output_tokens, window), ""),
    ]
    return [(div_id, _series_figure(title, series.t_s, values, labels, fmt))
            for div_id, title, values, fmt in quantities]


def _series_figure(title: str, t: np.ndarray, values: np.ndarray, labels: Sequence[str], fmt: str) -> Any:
    from plotly import graph_objects as go

    figure = go.Figure()
    times = t.tolist()
    if values.shape[1] <= MAX_LINES:
        for r, label in enumerate(labels):
            figure.add_trace(go.Scatter(x=times, y=values[:, r].tolist(), mode="lines", name=label))
    else:
        # Many replicas: their spread as a band around the mean.
        band = {"mode": "lines", "line": {"width": 0}, "showlegend": False, "hoverinfo": "skip"}
        figure.add_trace(go.Scatter(x=times, y=values.max(axis=1).tolist(), name="max", **band))
        figure.add_trace(go.Scatter(x=times, y=values.min(axis=1).tolist(), name="min", fill="tonexty",
                                    fillcolor="rgba(31,119,180,0.25)", **band))
        figure.add_trace(go.Scatter(x=times, y=values.mean(axis=1).tolist(), mode="lines",
                                    name=f"mean of {values.shape[1]} replicas (band: min to max)"))
    figure.update_layout(title={"text": title}, height=300, margin={"t": 40, "b": 40, "l": 60, "r": 20},
                         xaxis_title="time (s)", yaxis={"tickformat": fmt, "rangemode": "tozero"})
    return figure


# ---- tables ------------------------------------------------------------------------------
def replica_table(replicas: Sequence[dict], duration_s: float) -> tuple[list[str], list[list[Any]]]:
    """Each replica's counts, busy share, peak KV usage and prefix-cache hit rate."""
    columns = ["replica", "requests", "completed", "preemptions", "steps", "busy", "peak KV usage",
               "prefix hit rate", "serving s"]
    rows = [[_replica_label(r), r["requests"], r["completed"], r["preemptions"], r["steps"],
             _percent(r["busy_s"] / duration_s if duration_s > 0 else 0.0), _percent(r["peak_kv_usage"]),
             _percent(r["prefix_cache_hit_rate"]), r.get("serving_s")] for r in replicas]
    return columns, rows


def group_table(groups: dict[str, dict]) -> tuple[list[str], list[list[Any]]]:
    """One row per class or tenant: counts, tokens, goodput and latency percentiles."""
    columns = ["name", "requests", "completed", "input tokens", "output tokens", "goodput req/s",
               "goodput output tok/s", "SLO attainment", "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms",
               "TPOT p99 ms", "E2E p50 ms", "E2E p99 ms"]
    rows = []
    for name, g in groups.items():
        good = g["goodput"]
        latencies = [(g.get(key) or {}).get(p) for key in ("ttft_ms", "tpot_ms", "e2e_ms") for p in ("p50", "p99")]
        rows.append([name, g["requests"], g["completed"], g["input_tokens"], g["output_tokens"],
                     good["requests_per_s"], good["output_tokens_per_s"], _percent(good["slo_attainment"]),
                     *latencies])
    return columns, rows


def _percent(fraction: float) -> str:
    return f"{fraction:.1%}"
