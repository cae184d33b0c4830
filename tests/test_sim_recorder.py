"""The time-series recorder: it changes nothing in a run, fused or stepped, and its readings are sane."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kairos.cluster import make_router
from kairos.cluster.disaggregation import make_decider
from kairos.cluster.migration import make_migration_policy
from kairos.engine import SchedulerConfig
from kairos.hardware import Link
from kairos.metrics.timeseries import TIMESERIES_COLUMNS, write_timeseries
from kairos.scenario.load import load_scenario
from kairos.scenario.run import run_scenario
from kairos.sim.disaggregated import DisaggregatedSimulation
from kairos.sim.migration import MigratingSimulation
from kairos.sim.recorder import MAX_SAMPLES, TimeSeriesRecorder
from kairos.sim.runner import Simulation
from kairos.workload.spec import RequestSpec

from test_sim_fast_path import _replicas, fleet_changes, timelines, workloads

KINDS = ["plain", "lifecycle", "migration", "disaggregated"]


def build(kind, specs, fast, blocks, changes=(), started=0):
    """A small simulation of `kind` over fresh replicas."""
    cfg = SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=256)
    if kind == "disaggregated":
        prefill, _ = _replicas(2, blocks, cfg)
        decode, itl = _replicas(2, blocks, cfg, first=2)
        for replica in prefill:
            replica.core.itl = itl
        return DisaggregatedSimulation(
            [replace(spec, after=None) for spec in specs], prefill, decode, make_router("least_outstanding"),
            make_router("round_robin"), decider=make_decider("prefix_threshold", 64), link=Link("test", 1e9, 5e-6),
            kv_bytes=lambda n: 4096 * n, overlap=True, num_layers=4, max_model_len=1 << 20, itl=itl,
            fast_decode=fast)
    replicas, itl = _replicas(2 + started, blocks, cfg, serving=2)
    if kind == "migration":
        return MigratingSimulation(
            specs, replicas, make_router("least_kv"), policy=make_migration_policy("imbalance", gap=0.05),
            link=Link("test", 1e9, 5e-6), kv_bytes=lambda n: 4096 * n, interval_s=0.01, max_stages=3,
            max_model_len=1 << 20, itl=itl, fast_decode=fast, lifecycle=changes)
    return Simulation(specs, replicas, make_router("least_kv"), max_model_len=1 << 20, itl=itl, fast_decode=fast,
                      lifecycle=changes)


def outcome(result):
    """Everything a run reports, the time series aside."""
    facts = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)
             if f.name not in ("records", "itl", "timeseries")}
    return timelines(result), facts, result.itl.count, result.itl.summary()


def run(kind, specs, fast, blocks, record, changes=(), started=0):
    sim = build(kind, specs, fast, blocks, changes, started)
    if record:
        sim.recorder = TimeSeriesRecorder()
    return sim.run()


def series_arrays(series):
    return [series.interval_s, *(getattr(series, f.name) for f in dataclasses.fields(series)[1:])]


@settings(max_examples=40, deadline=None)
@given(workloads(), st.data(), st.sampled_from([60, 150, 1000]), st.sampled_from(KINDS))
def test_recording_changes_nothing_and_reads_what_stepping_shows(specs, data, blocks, kind):
    changes, started = data.draw(fleet_changes(2)) if kind == "lifecycle" else ((), 0)
    results = {(fast, record): run(kind, specs, fast, blocks, record, changes, started)
               for fast in (True, False) for record in (True, False)}
    for fast in (True, False):
        assert outcome(results[fast, True]) == outcome(results[fast, False])
        assert results[fast, False].timeseries is None
    # A fused window read mid-way gives what stepping through it shows at the same instants.
    fused, stepped = results[True, True].timeseries, results[False, True].timeseries
    for a, b in zip(series_arrays(fused), series_arrays(stepped), strict=True):
        np.testing.assert_array_equal(a, b)
    assert_sane(fused, results[True, True], kind)


def assert_sane(series, result, kind):
    assert 1 <= len(series.t_s) <= MAX_SAMPLES
    assert series.t_s[-1] <= result.end_s
    assert series.num_replicas == len(result.replicas)
    assert ((series.kv_usage >= 0) & (series.kv_usage <= 1)).all()
    assert (series.running >= 0).all() and (series.waiting >= 0).all()
    for cumulative in (series.completions, series.output_tokens):
        assert (np.diff(cumulative, axis=0) >= 0).all()
    if kind in ("plain", "lifecycle"):  # (a prefill replica's requests finish there too; a migrated one moves)
        # Every request routed to a replica is running, waiting or finished there.
        np.testing.assert_array_equal(series.running + series.waiting, series.arrivals - series.completions)
        assert (np.diff(series.arrivals, axis=0) >= 0).all()
        assert series.completions.sum(axis=1)[-1] <= sum(r.finished for r in result.records)
        assert series.output_tokens.sum(axis=1)[-1] <= sum(r.output_tokens for r in result.records)


def test_the_interval_doubles_to_keep_a_long_run_within_the_sample_cap():
    specs = [RequestSpec(f"r{i}", 3.0 * i, 200, 50) for i in range(20)]
    result = run("plain", specs, True, 1000, True)
    series = result.timeseries
    assert MAX_SAMPLES // 2 <= len(series.t_s) <= MAX_SAMPLES
    assert series.interval_s == pytest.approx(0.001 * 2 ** round(np.log2(series.interval_s / 0.001)))
    np.testing.assert_allclose(series.t_s, np.arange(len(series.t_s)) * series.interval_s)
    # Just before the 11th request arrives, the first ten have finished, every token counted.
    i = int(np.searchsorted(series.t_s, 30.0)) - 1
    assert series.arrivals[i].sum() == series.completions[i].sum() == 10
    assert series.output_tokens[i].sum() == 10 * 50 and series.running[i].sum() == 0


def test_rates_are_differences_over_a_window():
    specs = [RequestSpec(f"r{i}", 0.5 * i, 100, 20) for i in range(40)]
    series = run("plain", specs, True, 1000, True).timeseries
    rate = series.rate(series.arrivals.sum(axis=1, keepdims=True), 50)
    assert rate[0, 0] == 0.0 and rate.max() <= 2.0 + 1.0 / (50 * series.interval_s) + 1e-9
    # Two arrivals per second, give or take the requests at a window's edges.
    middle = rate[100:-100, 0]
    assert np.abs(middle - 2.0).max() <= 1.0 / (50 * series.interval_s) + 1e-9


def test_scenario_reports_are_identical_with_the_recorder(tmp_path):
    scenario = load_scenario(None, {"workload.num_requests": 150, "workload.rate": 20.0, "cluster.replicas": 2})
    for fast in (True, False):
        plain = run_scenario(scenario, fast_decode=fast)
        recorded = run_scenario(scenario, fast_decode=fast, timeseries=True)
        for report in (plain.report, recorded.report):
            report.pop("wall_time_s")
        assert plain.report == recorded.report and plain.timeseries is None
        assert recorded.timeseries.num_replicas == 2
    path = write_timeseries(tmp_path, recorded.timeseries)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(TIMESERIES_COLUMNS)
    assert len(lines) == 1 + 2 * len(recorded.timeseries.t_s)


def test_lockstep_replicas_are_recorded_too():
    pytest.importorskip("aiconfigurator_core")
    scenario = load_scenario(None, {"workload.num_requests": 60, "workload.rate": 20.0, "model.name": "qwen3-30b-a3b",
                                    "hardware.dp": 2, "hardware.ep": True, "perf.model": "aiconfigurator"})
    plain, recorded = run_scenario(scenario), run_scenario(scenario, timeseries=True)
    plain.report.pop("wall_time_s"), recorded.report.pop("wall_time_s")
    assert plain.report == recorded.report
    series = recorded.timeseries
    assert series.num_replicas == 1 and series.output_tokens[-1, 0] > 0
    assert ((series.kv_usage >= 0) & (series.kv_usage <= 1)).all()
