"""Closed-loop workloads (`workload.concurrency`) in the simulator: at most C requests in
flight, each end sending the next one due, TTFT counted from the send."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence

import pytest
from pydantic import ValidationError

from kairos.cluster import make_router
from kairos.engine import EngineCore, KVCacheManager, SchedulerConfig
from kairos.metrics import RequestRecord
from kairos.metrics.itl import ItlCollector
from kairos.scenario.load import load_scenario
from kairos.scenario.run import run_scenario
from kairos.sim.executor import SimExecutor
from kairos.sim.replica import PrefixHasher, SimReplica
from kairos.sim.runner import SimResult, Simulation
from kairos.workload import RequestSpec, WorkloadConfig, build_workload

from cli_helpers import kairos, one_line_error
from helpers import LinearModel


def closed_loop(specs: Sequence[RequestSpec], concurrency: int | None, *, fast: bool = True,
                replicas: int = 1, num_blocks: int = 2000, router: str = "round_robin",
                config: SchedulerConfig = SchedulerConfig(), max_model_len: int = 1 << 20,
                request_latency_s: float = 0.0) -> SimResult:
    """helpers.simulate with a concurrency gate."""
    itl = ItlCollector()
    hasher = PrefixHasher(16)
    reps = [SimReplica(i, EngineCore(config, KVCacheManager(num_blocks, 16, True), itl=itl,
                                     check_invariants=True), SimExecutor(LinearModel()), hasher)
            for i in range(replicas)]
    return Simulation(specs, reps, make_router(router, seed=0), max_model_len=max_model_len, itl=itl,
                      fast_decode=fast, request_latency=lambda _: request_latency_s,
                      concurrency=concurrency).run()


def in_flight_after_each_instant(records: Sequence[RequestRecord]) -> list[tuple[float, int]]:
    """How many requests are in flight once everything at each instant has happened: a
    request holds a slot from its arrival (its send) to its finish, or its arrival when
    it was rejected. Ends come before sends at the same instant: a freed slot is reused."""
    events = sorted([(r.arrival_s, 1) for r in records]
                    + [(r.finish_s if r.finish_s is not None else r.arrival_s, -1) for r in records],
                    key=lambda e: (e[0], e[1]))
    counts: list[tuple[float, int]] = []
    count = 0
    for t, delta in events:
        count += delta
        if counts and counts[-1][0] == t:
            counts[-1] = (t, count)
        else:
            counts.append((t, count))
    return counts


def assert_closed_loop(records: Sequence[RequestRecord], concurrency: int) -> None:
    """At most C in flight at every instant, and exactly C until the last request is sent."""
    last_send = max(r.arrival_s for r in records)
    for t, count in in_flight_after_each_instant(records):
        assert count <= concurrency, f"{count} in flight at {t}"
        if t < last_send:
            assert count == concurrency, f"only {count} in flight at {t}"


def fixed(n: int, prompt: int = 256, output: int = 64, arrival: float = 0.0) -> list[RequestSpec]:
    return [RequestSpec(f"r{i}", arrival, prompt, output) for i in range(n)]


def test_exactly_c_in_flight_and_sends_in_workload_order():
    result = closed_loop(fixed(40), 6)
    records = result.records
    assert all(r.finished for r in records) and len(records) == 40
    assert sum(r.arrival_s == 0.0 for r in records) == 6
    assert_closed_loop(records, 6)
    # Sent in the workload's order, and each send after the first C is some request's end.
    assert [r.request_id for r in records] == [f"r{i}" for i in range(40)]
    finishes = {r.finish_s for r in records}
    assert all(r.arrival_s in finishes for r in records[6:])


def test_ttft_counts_from_the_send_not_from_the_due_time():
    # One slot: each request waits for the one before it, but its TTFT is one prefill.
    records = closed_loop(fixed(5), 1).records
    for before, after in zip(records, records[1:]):
        assert after.arrival_s == before.finish_s
    ttfts = [r.first_token_s - r.arrival_s for r in records]
    assert max(ttfts) == pytest.approx(min(ttfts), rel=1e-9)


def test_rejected_requests_free_their_slot_at_once():
    specs = [RequestSpec("big0", 0.0, 5000, 10), RequestSpec("ok1", 0.0, 100, 20),
             RequestSpec("big2", 0.0, 5000, 10), RequestSpec("big3", 0.0, 5000, 10),
             RequestSpec("ok4", 0.0, 100, 20)]
    records = {r.request_id: r for r in closed_loop(specs, 1, max_model_len=1000).records}
    assert [records[i].rejected_reason is not None for i in ("big0", "big2", "big3")] == [True] * 3
    assert records["ok1"].finished and records["ok4"].finished
    # big0 ends at once and ok1 goes at t=0; ok1's end sends big2, whose rejection sends big3, then ok4.
    assert records["big0"].arrival_s == records["ok1"].arrival_s == 0.0
    end = records["ok1"].finish_s
    assert records["big2"].arrival_s == records["big3"].arrival_s == records["ok4"].arrival_s == end
    assert_closed_loop(list(records.values()), 1)


def test_a_long_run_of_rejections_needs_no_recursion():
    specs = [RequestSpec(f"big{i}", 0.0, 5000, 10) for i in range(5000)] + fixed(2)
    records = closed_loop(specs, 1, max_model_len=1000).records
    assert len(records) == 5002 and sum(r.finished for r in records) == 2


def test_a_request_is_sent_at_its_arrival_or_when_a_slot_frees():
    specs = [RequestSpec(f"r{i}", 0.05 * i, 200, 40) for i in range(30)]
    gated = closed_loop(specs, 2).records
    sent = {r.request_id: r.arrival_s for r in gated}
    assert all(sent[spec.request_id] >= spec.arrival_s for spec in specs)
    assert any(sent[spec.request_id] > spec.arrival_s for spec in specs)  # some waited
    assert [r.request_id for r in gated] == [spec.request_id for spec in specs]
    assert_closed_loop_at_most(gated, 2)
    # A gate wider than the workload changes nothing.
    assert timelines(closed_loop(specs, 30)) == timelines(closed_loop(specs, None))


def assert_closed_loop_at_most(records: Sequence[RequestRecord], concurrency: int) -> None:
    assert max(count for _, count in in_flight_after_each_instant(records)) <= concurrency


def timelines(result: SimResult) -> list[tuple]:
    return [(r.request_id, r.arrival_s, r.first_token_s, r.finish_s, r.rejected_reason)
            for r in result.records]


def test_front_end_latency_holds_the_slot_and_counts_in_ttft():
    records = closed_loop(fixed(12), 3, request_latency_s=0.25).records
    assert_closed_loop(records, 3)
    assert all(r.first_token_s - r.arrival_s >= 0.25 for r in records)


def test_follow_up_turns_wait_for_a_slot_too():
    cfg = WorkloadConfig(num_requests=60, rate=float("inf"), input_len=64, output_len=16,
                         sessions={"turns": 3, "think_time_s": 0.01}, concurrency=4)
    specs = build_workload(cfg, seed=1)
    records = closed_loop(specs, 4, replicas=2).records
    assert len(records) == 60 and all(r.finished for r in records)
    assert_closed_loop_at_most(records, 4)
    # Every turn goes after its predecessor ends and its think time passes.
    by_id = {r.request_id: r for r in records}
    for spec in specs:
        if spec.after is not None:
            assert by_id[spec.request_id].arrival_s >= by_id[spec.after].finish_s + spec.think_s


def test_throughput_follows_littles_law_on_a_fixed_length_workload():
    # 48 rounds of C requests of 1024 in, 1024 out: requests of one length move in
    # rounds, in flight stays C to the end, and throughput = C / mean E2E.
    c = 16
    scenario = load_scenario(None, {"workload.num_requests": 48 * c, "workload.rate": float("inf"),
                                    "workload.input_len": 1024, "workload.output_len": 1024,
                                    "workload.prefixes": None, "workload.concurrency": c})
    run = run_scenario(scenario, check_invariants=True)
    summary = run.report["summary"]
    assert summary["completed"] == 48 * c
    assert_closed_loop(run.records, c)
    littles = c / (summary["e2e_ms"]["mean"] / 1000.0)
    assert summary["throughput"]["requests_per_s"] == pytest.approx(littles, rel=1e-3)
    assert run.report["scenario"]["workload"]["concurrency"] == c


def test_same_seed_gives_the_same_report():
    overrides = {"workload.num_requests": 200, "workload.rate": 20.0, "workload.concurrency": 8,
                 "cluster.replicas": 2, "seed": 3}
    first = run_scenario(load_scenario(None, overrides))
    second = run_scenario(load_scenario(None, overrides))
    for run in (first, second):
        run.report.pop("wall_time_s")
    assert first.report == second.report
    assert first.records == second.records
    assert_closed_loop_at_most(first.records, 8)


def test_concurrency_is_validated():
    assert WorkloadConfig().concurrency is None
    cfg = WorkloadConfig(concurrency=8, rate=float("inf"))
    assert WorkloadConfig.model_validate_json(cfg.model_dump_json()) == cfg
    for bad in (0, -1, 1.5, "many"):
        with pytest.raises(ValidationError, match="concurrency"):
            WorkloadConfig(concurrency=bad)


def test_simulate_concurrency_option(capsys, tmp_path):
    code, out, err = kairos(capsys, "simulate", "--concurrency", "4", "--num-requests", "20",
                            "--rate", "inf", "-q", "-o", str(tmp_path))
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["scenario"]["workload"]["concurrency"] == 4
    assert report["summary"]["completed"] == 20
    with (tmp_path / "requests.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    records = [RequestRecord(row["request_id"], float(row["arrival_s"]), 0,
                             finish_s=float(row["finish_s"])) for row in rows]
    assert_closed_loop(records, 4)
    assert "workload.concurrency" in one_line_error(capsys, "simulate", "--concurrency", "0", "-q")
