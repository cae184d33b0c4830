"""Replica lifecycle: replicas started and drained at set times, routers seeing only the serving ones."""

from __future__ import annotations

import json

import pytest

from kairos.scenario.load import load_scenario
from kairos.scenario.run import build_simulation, resolve_deployment, run_scenario
from kairos.sim.replica import ReplicaState
from kairos.workload import build_workload

from cli_helpers import kairos, one_line_error

BURSTY = {"cluster.replicas": 2, "engine.num_gpu_blocks": 600,
          "workload.arrival": "gamma", "workload.cv": 3.0, "workload.rate": 12.0, "workload.num_requests": 200,
          "workload.output_len": {"kind": "lognormal", "median": 150, "sigma": 1.0, "min": 8, "max": 1500},
          "workload.input_len": {"kind": "lognormal", "median": 400, "sigma": 0.8, "min": 16, "max": 3000}}
SCALE = [{"at_s": 3, "start": 2, "startup_s": 2}, {"at_s": 9, "drain": 3}]


def simulate(lifecycle=SCALE, migration=None, router="least_outstanding", fast=True, **overrides):
    settings = {**BURSTY, "cluster.router": router, "cluster.lifecycle": lifecycle, **overrides}
    if migration is not None:
        settings["cluster.migration"] = migration
    spec = load_scenario(None, settings)
    sim = build_simulation(spec, resolve_deployment(spec), build_workload(spec.workload, spec.seed),
                           fast_decode=fast, check_invariants=True)
    routed = []  # (replica chosen, its state then)
    route = sim.router.route

    def watched(request, replicas):
        index = route(request, replicas)
        routed.append((index, sim.replicas[index].state))
        return index

    sim.router.route = watched
    return sim, sim.run(), routed


@pytest.mark.parametrize("migration", [None, {"policy": "imbalance"}, {"policy": "kv_pressure"}])
@pytest.mark.parametrize("router", ["round_robin", "least_outstanding", "power_of_two", "prefix_affinity"])
def test_every_request_finishes_once_on_serving_replicas_and_every_block_comes_back(router, migration):
    sim, result, routed = simulate(migration=migration, router=router)
    assert len(result.records) == 200 and all(r.finished for r in result.records)
    assert sum(rep["completed"] for rep in result.replicas) == 200
    assert sum(rep["requests"] for rep in result.replicas) == 200
    assert all(state is ReplicaState.SERVING for _, state in routed)
    assert {index for index, _ in routed} == {0, 1, 2, 3}
    for replica in sim.replicas:
        replica.core.check_kv()
        assert replica.core.kv.num_used_blocks == 0 and not replica.core.held and not replica.core.reserved
    states = [replica.state for replica in sim.replicas]
    assert states == [ReplicaState.SERVING] + [ReplicaState.STOPPED] * 3
    if migration is not None:
        assert result.migration["migrations"] > 0


def test_a_drained_replica_stops_only_once_its_last_request_ends():
    _, result, _ = simulate()
    changes = result.lifecycle["changes"]
    assert [(c["replica"], c["state"]) for c in changes[:4]] == [
        (2, "starting"), (3, "starting"), (2, "serving"), (3, "serving")]
    assert {c["replica"] for c in changes if c["state"] == "draining"} == {1, 2, 3}  # the last started first
    for rep in result.replicas[1:]:
        last_end = max(r.finish_s for r in result.records if r.replica == rep["index"])
        assert rep["stopped_s"] == last_end >= 9.0
        assert all(r.arrival_s < 9.0 for r in result.records if r.replica == rep["index"] and r.arrival_s)
    starting = result.lifecycle["replica_s"]["starting"]
    assert starting == pytest.approx(4.0)
    assert result.replicas[2]["serving_s"] == pytest.approx(4.0)  # serving 5 s .. 9 s, then draining
    assert result.lifecycle["replica_s"]["up"] == pytest.approx(sum(rep["up_s"] for rep in result.replicas))


def test_with_migration_a_draining_replica_moves_its_requests_out():
    _, without, _ = simulate()
    _, moved, _ = simulate(migration={"policy": "kv_pressure"})
    drained = [rep for rep in moved.replicas if rep["index"] != 0]
    assert moved.migration["migrations"] + moved.migration["rerouted"] > 0
    # Moving out empties a draining replica sooner than letting its requests run to the end.
    assert sum(r["stopped_s"] for r in drained) < sum(r["stopped_s"] for r in without.replicas[1:])


def test_requests_wait_in_the_cluster_queue_while_no_replica_serves():
    lifecycle = [{"at_s": 2, "drain": 2}, {"at_s": 2, "start": 1, "startup_s": 3}]
    sim, result, routed = simulate(lifecycle, **{"workload.arrival": "poisson", "workload.num_requests": 60})
    assert all(r.finished for r in result.records)
    late = [r for r in result.records if 2.0 <= r.arrival_s < 5.0]
    assert late and all(r.first_scheduled_s >= 5.0 and r.replica == 2 for r in late)
    assert all(state is ReplicaState.SERVING for _, state in routed)


@pytest.mark.parametrize("migration", [None, {"policy": "imbalance", "options": {"gap": 0.05}}])
def test_the_fused_decode_path_matches_stepping_with_lifecycle_changes(migration):
    _, fast, _ = simulate(migration=migration, fast=True)
    _, slow, _ = simulate(migration=migration, fast=False)
    assert [(r.request_id, r.first_token_s, r.finish_s, r.replica, r.output_tokens) for r in fast.records] == \
           [(r.request_id, r.first_token_s, r.finish_s, r.replica, r.output_tokens) for r in slow.records]
    assert fast.lifecycle == slow.lifecycle and fast.migration == slow.migration


def test_same_seed_gives_the_same_lifecycle_report():
    settings = {**BURSTY, "cluster.lifecycle": SCALE, "cluster.migration": {"policy": "imbalance"}}
    first, second = (run_scenario(load_scenario(None, settings)).report for _ in range(2))
    for report in (first, second):
        report.pop("wall_time_s")
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert first["lifecycle"]["gpu_s"] == first["lifecycle"]["replica_s"]["up"]  # tp 1: a GPU per replica


def test_changes_after_the_last_request_do_not_happen():
    _, result, _ = simulate([{"at_s": 1e6, "start": 1}])
    assert result.lifecycle["changes"] == []
    assert result.replicas[2]["up_s"] == 0 and result.replicas[2]["started_s"] is None


@pytest.mark.parametrize("lifecycle, message", [
    ("[{at_s: 5, drain: 3}]", "drain 3 at 5 s, but only 2 replica(s) are up"),
    ("[{at_s: 5, start: 1, drain: 1}]", "exactly one of start or drain"),
    ("[{at_s: 5, drain: 1, startup_s: 2}]", "startup_s goes with start"),
    ("[{at_s: 5, drain: 2}]", "drains every replica"),
    ("[{at_s: -1, start: 1}]", "at_s"),
    ("[{at_s: 1, start: 0}]", "start"),
])
def test_bad_lifecycles_are_one_line_errors(capsys, lifecycle, message):
    line = one_line_error(capsys, "simulate", "--replicas", "2", "--set", f"cluster.lifecycle={lifecycle}",
                          "--num-requests", "3")
    assert message in line


def test_simulate_reports_the_lifecycle(capsys, tmp_path):
    code, _, err = kairos(capsys, "simulate", "--replicas", "1", "--set",
                          "cluster.lifecycle=[{at_s: 1, start: 1, startup_s: 0.5}]", "--num-requests", "40",
                          "-o", str(tmp_path))
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert [c["state"] for c in report["lifecycle"]["changes"]] == ["starting", "serving"]
    assert report["replicas"][1]["started_s"] == 1.0
