"""Scenarios with tensor, data and expert parallelism and quantised weights, end to end."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kairos.errors import KairosError
from kairos.scenario.load import load_scenario
from kairos.scenario.run import resolve_deployment, run_scenario

pytest.importorskip("aiconfigurator_core")

SMALL_LOAD = {"workload.num_requests": 120, "workload.rate": 20.0}


def run(**overrides):
    return run_scenario(load_scenario(None, {**SMALL_LOAD, **overrides}), check_invariants=True)


def test_dp_ep_moe_scenario_runs_lockstep_ranks():
    result = run(**{"model.name": "Qwen/Qwen3-30B-A3B-Instruct-2507", "hardware.dp": 2, "hardware.ep": True,
                    "perf.model": "aiconfigurator"})
    report = result.report
    assert report["summary"]["completed"] == 120
    deployment = report["deployment"]
    assert (deployment["dp"], deployment["ep"], deployment["moe_ep"], deployment["gpus_per_replica"]) == (2, True, 2, 2)
    assert deployment["kv_blocks_per_replica"] == 2 * deployment["kv_blocks_per_engine"]
    assert any("qwen3-30b-a3b" in note for note in deployment["notes"])
    # One replica (one server), its requests spread over both ranks by the internal balancer.
    assert len(report["replicas"]) == 1


def test_dp_ep_spreads_experts_so_more_kv_fits():
    def blocks(**overrides):
        return resolve_deployment(load_scenario(None, {"model.name": "qwen3-30b-a3b", **overrides})).kv_blocks
    one_gpu = blocks(**{"perf.model": "roofline"})
    assert blocks(**{"perf.model": "aiconfigurator", "hardware.dp": 2, "hardware.ep": True}) > one_gpu


def test_lockstep_run_is_deterministic():
    overrides = {"model.name": "qwen3-30b-a3b", "hardware.dp": 2, "hardware.ep": True, "perf.model": "aiconfigurator"}
    first, second = run(**overrides).report, run(**overrides).report
    first["wall_time_s"] = second["wall_time_s"] = 0.0
    assert first == second


def test_tp4_and_fp8_scenarios():
    tp4 = run(**{"model.name": "llama-3.1-70b", "hardware.tp": 4, "perf.model": "aiconfigurator"}).report
    fp8 = run(**{"model.name": "llama-3.1-70b", "hardware.tp": 4, "model.weights_dtype": "fp8",
                 "perf.model": "aiconfigurator"}).report
    assert tp4["summary"]["completed"] == fp8["summary"]["completed"] == 120
    assert fp8["deployment"]["weights_dtype"] == "fp8"
    # Half the weight bytes: more KV blocks, and faster weight-bound decodes.
    assert fp8["deployment"]["kv_blocks_per_engine"] > tp4["deployment"]["kv_blocks_per_engine"]
    assert fp8["summary"]["tpot_ms"]["mean"] < tp4["summary"]["tpot_ms"]["mean"]


def test_dense_data_parallel_ranks_are_independent_engines():
    report = run(**{"hardware.dp": 2, "cluster.router": "least_outstanding"}).report
    assert len(report["replicas"]) == 2
    assert all(rep["requests"] > 0 for rep in report["replicas"])


def test_unmodelled_parallelism_is_an_error():
    with pytest.raises(KairosError, match="dense model"):
        resolve_deployment(load_scenario(None, {"hardware.ep": True}))
    with pytest.raises(KairosError, match="needs --perf aiconfigurator"):
        resolve_deployment(load_scenario(None, {"model.name": "qwen3-30b-a3b", "hardware.dp": 2}))
    with pytest.raises((KairosError, ValidationError)):
        load_scenario(None, {"hardware.pp": 2})


def test_internal_balancer_weighs_waiting_four_times_running():
    from kairos.engine import EngineCore, KVCacheManager, SchedulerConfig
    from kairos.sim.lockstep import LockstepCores
    from kairos.workload.spec import RequestSpec

    cores = [EngineCore(SchedulerConfig(8, 256, True, "fcfs"), KVCacheManager(64, 16, False)) for _ in range(2)]
    group = LockstepCores(cores)
    spec = lambda i: RequestSpec(f"r{i}", 0.0, 32, 4)  # noqa: E731
    ranks = [cores.index(next(c for c in cores if any(r.request_id == f"r{i}" for r in c.scheduler.waiting)))
             for i in range(4) if group.add_request(spec(i), 0.0)]
    assert ranks == [0, 1, 0, 1]  # ties go to the lower rank, then the emptier one
    step = group.schedule(0.0)  # both ranks admit their two: running now
    assert [len(out.scheduled) for out in step.outs] == [2, 2]
    group.add_request(spec(4), 0.0)
    group.add_request(spec(5), 0.0)  # rank 0: 4 x 1 waiting + 2 running = 6 > rank 1's 2
    assert [core.num_waiting for core in cores] == [1, 1]
