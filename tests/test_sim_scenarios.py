"""Whole-scenario behaviour: determinism, load, prefix caching, preemption, multi-turn sessions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kairos.metrics import write_report
from kairos.scenario.load import load_scenario
from kairos.scenario.run import run_scenario

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared data not present")


def run(**overrides):
    return run_scenario(load_scenario(None, overrides), check_invariants=True)


def test_same_seed_gives_identical_report_and_requests(tmp_path):
    overrides = {"workload.num_requests": 150, "cluster.replicas": 2, "cluster.router": "power_of_two",
                 "workload.sessions": {"turns": 3, "think_time_s": 1.0}}
    paths = []
    for name in ("a", "b"):
        result = run(**overrides)
        result.report["wall_time_s"] = 0.0  # the one field that measures the machine
        paths.append(write_report(tmp_path / name, result.report, result.records))
    for first, second in zip(*paths):
        assert first.read_bytes() == second.read_bytes()
    other = run(**overrides, seed=1)
    assert other.report["summary"] != json.loads(paths[0][0].read_text())["summary"]


def test_ttft_rises_with_arrival_rate():
    ttfts = [run(**{"workload.num_requests": 300, "workload.rate": rate}).report["summary"]["ttft_ms"]["mean"]
             for rate in (2.0, 12.0, 24.0)]
    assert ttfts[0] < ttfts[1] < ttfts[2]


def test_preemption_when_kv_runs_out_and_every_request_finishes():
    result = run(**{"workload.num_requests": 120, "workload.rate": 50.0, "engine.num_gpu_blocks": 400})
    summary = result.report["summary"]
    assert summary["preemptions"] > 0
    assert summary["completed"] == summary["num_requests"] == 120
    assert all(r.output_tokens > 0 and r.rejected_reason is None for r in result.records)


def test_requests_larger_than_the_kv_cache_are_rejected_with_a_reason():
    result = run(**{"workload.num_requests": 50, "engine.num_gpu_blocks": 40})
    rejected = [r for r in result.records if r.rejected_reason]
    assert rejected and all("KV cache" in r.rejected_reason for r in rejected)
    assert result.report["summary"]["completed"] == 50 - len(rejected)


def test_multi_turn_sessions_reuse_the_previous_turn():
    result = run(**{"workload.num_requests": 200, "workload.rate": 2.0, "workload.prefixes": None,
                    "workload.sessions": {"turns": 4, "think_time_s": 2.0}})
    by_id = {r.request_id: r for r in result.records}
    later_turns = [r for r in result.records if not r.request_id.endswith("-t0")]
    assert later_turns and all(r.finished for r in result.records)
    # A later turn resends the conversation: most of it comes from the prefix cache.
    assert sum(r.cached_tokens for r in later_turns) > 0.5 * sum(r.input_tokens for r in later_turns)
    assert result.report["summary"]["prefix_cache_hit_rate"] > 0.4
    assert len(by_id) == 200


@needs_data
def test_prefix_caching_lowers_ttft_on_mooncake_conversation():
    trace = {"workload.kind": "trace", "workload.num_requests": 600,
             "workload.path": str(DATA / "traces" / "mooncake_conversation.jsonl")}
    on = run(**trace).report["summary"]
    off = run(**trace, **{"engine.enable_prefix_caching": False}).report["summary"]
    assert on["prefix_cache_hit_rate"] > 0.02 and off["prefix_cache_hit_rate"] == 0.0
    assert on["ttft_ms"]["mean"] < off["ttft_ms"]["mean"]


@needs_data
def test_prefix_affinity_beats_round_robin_on_shared_prefixes():
    common = {"workload.num_requests": 600, "workload.rate": 4.0, "cluster.replicas": 4,
              "workload.sessions": {"turns": 5, "think_time_s": 3.0}}
    rr = run(**common, **{"cluster.router": "round_robin"}).report["summary"]
    pa = run(**common, **{"cluster.router": "prefix_affinity"}).report["summary"]
    assert pa["prefix_cache_hit_rate"] > rr["prefix_cache_hit_rate"]
    assert pa["ttft_ms"]["mean"] < rr["ttft_ms"]["mean"]


def test_front_end_latency_delays_the_engine_not_the_arrival():
    from helpers import simulate
    from kairos.workload.spec import RequestSpec

    specs = [RequestSpec("a", 0.0, 100, 5), RequestSpec("b", 10.0, 100, 5)]
    plain = {r.request_id: r for r in simulate(specs).records}
    late = {r.request_id: r for r in simulate(specs, request_latency_s=0.25).records}
    for rid in ("a", "b"):
        assert late[rid].arrival_s == plain[rid].arrival_s
        assert late[rid].ttft_s == pytest.approx(plain[rid].ttft_s + 0.25)
        assert late[rid].first_scheduled_s == pytest.approx(plain[rid].first_scheduled_s + 0.25)
