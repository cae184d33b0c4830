"""Live migration: staged copies, a short stop-and-copy, the request finishing on its new replica."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from kairos.cluster.migration import make_migration_policy
from kairos.scenario.load import load_scenario
from kairos.scenario.run import build_simulation, resolve_deployment
from kairos.workload import build_workload
from kairos.workload.spec import RequestSpec

from cli_helpers import kairos, one_line_error
from helpers import LinearModel

PRESSED = {"cluster.replicas": 3, "cluster.router": "round_robin", "engine.num_gpu_blocks": 600,
           "workload.arrival": "gamma", "workload.cv": 4.0, "workload.rate": 10.0, "workload.num_requests": 150,
           "workload.output_len": {"kind": "lognormal", "median": 200, "sigma": 1.0, "min": 8, "max": 2000},
           "workload.input_len": {"kind": "lognormal", "median": 400, "sigma": 0.8, "min": 16, "max": 4000}}


def simulate(policy="imbalance", fast=True, **overrides):
    spec = load_scenario(None, {**PRESSED, "cluster.migration": {"policy": policy}, **overrides})
    sim = build_simulation(spec, resolve_deployment(spec), build_workload(spec.workload, spec.seed),
                           fast_decode=fast, check_invariants=True)
    return sim, sim.run()


@pytest.mark.parametrize("policy", ["imbalance", "kv_pressure", "balanced"])
def test_migrated_requests_finish_once_and_every_block_comes_back(policy):
    sim, result = simulate(policy)
    m = result.migration
    assert m["migrations"] > 0 and m["kv_bytes"] > 0
    assert all(r.finished for r in result.records) and len(result.records) == 150
    assert sum(rep["completed"] for rep in result.replicas) == 150
    assert sum(rep["requests"] for rep in result.replicas) == 150  # a moved request counts where it ended
    for replica in sim.replicas:
        assert replica.core.kv.usage() == 0 and not replica.core.held
    # Every token after the first is one inter-token latency, across the move too.
    assert result.itl.count == sum(r.output_tokens - 1 for r in result.records)
    # The stop-and-copy waits at least the link's latency; live stages keep it short.
    assert m["downtime_ms"]["p50"] >= 2e-3 and m["downtime_ms"]["p50"] < 100


@pytest.mark.parametrize("policy", ["imbalance", "balanced"])
def test_the_fused_decode_path_matches_stepping_with_migrations(policy):
    _, fast = simulate(policy, fast=True)
    _, slow = simulate(policy, fast=False)
    assert fast.migration["migrations"] > 0
    assert [(r.request_id, r.first_token_s, r.finish_s, r.replica, r.output_tokens) for r in fast.records] == \
           [(r.request_id, r.first_token_s, r.finish_s, r.replica, r.output_tokens) for r in slow.records]
    assert fast.migration == slow.migration


@dataclass
class View:
    index: int
    usage: float
    waiting: int = 0
    running: int = 1
    queued: float = 0.0
    free: int = 100
    head: int = 0
    lightest: int = 2

    def kv_free_blocks(self):
        return self.free

    def head_blocks(self):
        return self.head if self.waiting else 0

    def lightest_blocks(self):
        return self.lightest

    def kv_usage(self):
        return self.usage

    def kv_demand(self):
        return self.usage + self.queued

    def num_waiting(self):
        return self.waiting

    def num_running(self):
        return self.running


def test_imbalance_moves_from_the_fullest_to_the_emptiest_past_the_gap():
    policy = make_migration_policy("imbalance", gap=0.2)
    assert policy.choose([View(0, 0.5), View(1, 0.9), View(2, 0.1)]) == (1, 2)
    assert policy.choose([View(0, 0.5), View(1, 0.6)]) is None  # within the gap
    assert policy.choose([View(0, 0.9, running=0), View(1, 0.1)]) is None  # nothing running to move


def test_kv_pressure_moves_only_from_a_queueing_replica_to_one_without_a_queue():
    policy = make_migration_policy("kv_pressure", high=0.9, low=0.6)
    assert policy.choose([View(0, 0.95, waiting=3), View(1, 0.5, waiting=2), View(2, 0.55)]) == (0, 2)
    assert policy.choose([View(0, 0.95), View(1, 0.1)]) is None  # full but nothing waits
    assert policy.choose([View(0, 0.95, waiting=1), View(1, 0.7)]) is None  # no room below `low`


def test_balanced_moves_from_the_tightest_to_the_roomiest_by_free_blocks_per_request():
    policy = make_migration_policy("balanced", threshold=3.0)
    # Replica 0 has more free blocks than 1 but runs many more requests: it is the one about to preempt.
    tight, roomy = View(0, 0.5, running=40, free=80), View(1, 0.6, running=4, free=60)
    assert policy.choose([tight, roomy]) == (0, 1)
    # The head of a queue counts as one more request and takes its blocks first (Llumnix's de-fragmentation).
    assert policy.choose([View(0, 0.5, running=10, free=60), roomy]) is None  # 6 blocks each: above 3
    assert policy.choose([View(0, 0.5, running=10, waiting=1, head=40, free=60), roomy]) == (0, 1)
    # No move that would leave the destination tight, or tighter than the source.
    assert policy.choose([View(0, 0.5, running=40, free=80, lightest=10), View(1, 0.6, running=4, free=20)]) is None
    assert policy.choose([View(0, 0.5, running=2, free=5, lightest=30), View(1, 0.6, running=1, free=40)]) is None
    assert policy.choose([View(0, 0.9, running=40, free=20, lightest=0), roomy]) is None  # nothing decoding


def test_a_replicas_demand_counts_its_queued_requests_blocks():
    from kairos.engine import EngineCore, KVCacheManager, SchedulerConfig
    from kairos.sim.executor import SimExecutor
    from kairos.sim.replica import PrefixHasher, SimReplica

    core = EngineCore(SchedulerConfig(max_num_seqs=1), KVCacheManager(100, 16))
    replica = SimReplica(0, core, SimExecutor(LinearModel()), PrefixHasher(16))
    core.add_request(RequestSpec("a", 0.0, 160, 4), 0.0)
    core.add_request(RequestSpec("b", 0.0, 320, 4), 0.0)
    out = core.schedule(0.0)  # a runs (10 blocks + 1 for its next token); b waits for a seat
    assert [r.request_id for r, _ in out.scheduled] == ["a"]
    assert replica.kv_demand() == pytest.approx((core.kv.num_used_blocks + 20) / 100)
    assert replica.kv_demand() > replica.kv_usage()


def test_migration_settings_are_checked(capsys):
    line = one_line_error(capsys, "simulate", "--set", "cluster.migration={policy: teleport}", "--num-requests", "3")
    assert "unknown migration policy 'teleport'" in line
    line = one_line_error(capsys, "simulate", "--set", "cluster.migration={policy: imbalance, options: {gap2: 1}}",
                          "--num-requests", "3")
    assert "has no knob gap2 (knobs: gap)" in line


def test_simulate_reports_migrations(capsys, tmp_path):
    code, out, err = kairos(capsys, "simulate", "--set", "cluster.replicas=2", "--set",
                            "cluster.migration={policy: imbalance, options: {gap: 0.0}}", "--num-requests", "40",
                            "-o", str(tmp_path))
    assert code == 0, err
    assert "Migration (imbalance)" in out


def test_the_destination_reserves_blocks_and_counts_the_request_from_the_migration_start():
    spec = load_scenario(None, {**PRESSED, "cluster.migration": {"policy": "imbalance"}})
    sim = build_simulation(spec, resolve_deployment(spec), build_workload(spec.workload, spec.seed),
                           check_invariants=True)
    start, seen = sim._start, []

    def watched(source, target, t):
        before = (target.num_outstanding(), target.core.kv.num_used_blocks)
        started = start(source, target, t)
        after = (target.num_outstanding(), target.core.kv.num_used_blocks)
        seen.append((started, before, after))
        return started

    sim._start = watched
    result = sim.run()
    moved = [(before, after) for started, before, after in seen if started]
    assert moved and all(a[0] == b[0] + 1 and a[1] > b[1] for b, a in moved)
    assert result.migration["migrations"] + result.migration["abandoned"] + result.migration["aborted"] == len(moved)
    assert all(not replica.core.reserved for replica in sim.replicas)
