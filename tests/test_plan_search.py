"""kairos plan --search: the Pareto front of a small study, resuming it, P/D trials and Ray."""

from __future__ import annotations

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from kairos.cli.main import app
from kairos.plan import SloTarget
from kairos.plan.executors import LocalExecutor
from kairos.plan.search import SearchSpace, evaluate, search
from kairos.scenario.load import load_scenario

pytest.importorskip("optuna")

TARGET = SloTarget(ttft_ms=500, tpot_ms=50)
SMALL = {"workload.num_requests": 120}


def small_space(**changes) -> SearchSpace:
    return SearchSpace(("h100", "h200"), (1,), 2, max_num_batched_tokens=(1024, 4096), max_num_seqs=(64, 256),
                       **changes)


def test_a_search_ranks_its_trials_and_flags_an_undominated_front():
    result = search(load_scenario(None, SMALL), TARGET, small_space(), trials=5, executor=LocalExecutor(1))
    ok = [t for t in result.trials if t.error is None]
    assert 1 <= len(result.trials) <= 5 and ok and result.pareto
    assert [t.tokens_per_gpu for t in ok] == sorted((t.tokens_per_gpu for t in ok), reverse=True)
    for front in result.pareto:  # nothing beats a front trial on both objectives
        assert not any(t.tokens_per_gpu > front.tokens_per_gpu and t.tokens_per_user > front.tokens_per_user
                       for t in ok)
    for t in ok:
        assert t.gpus == t.overrides["hardware.tp"] * t.overrides["cluster.replicas"] <= 2
        assert t.tokens_per_gpu > 0 and t.tokens_per_user == pytest.approx(1e3 / t.tpot_mean_ms)


def test_a_study_in_sqlite_resumes_with_its_earlier_trials(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    scenario = load_scenario(None, SMALL)
    first = search(scenario, TARGET, small_space(), trials=2, storage=storage, executor=LocalExecutor(1))
    again = search(scenario, TARGET, small_space(), trials=2, storage=storage, executor=LocalExecutor(1))
    earlier = {json.dumps(t.overrides, sort_keys=True) for t in first.trials if t.error is None}
    assert earlier <= {json.dumps(t.overrides, sort_keys=True) for t in again.trials}
    assert len(again.trials) >= len(first.trials)


def test_a_disaggregated_trial_counts_both_pools_gpus():
    pools = {"prefill": {"replicas": 1, "tp": 1, "engine": {"max_num_batched_tokens": 8192, "max_num_seqs": 1}},
             "decode": {"replicas": 2, "tp": 1, "engine": {"max_num_seqs": 256}}}
    overrides = {"hardware.gpu": "h100", "cluster.router": "round_robin", "engine.policy": "fcfs",
                 "cluster.pools": pools}
    result = evaluate((load_scenario(None, SMALL), TARGET, overrides, 3, 0, 0.05))
    assert result.error is None and result.gpus == 3 and result.capacity_rps > 0
    assert result.deployment == "h100 1P(tp1, seqs 1)+2D(tp1, seqs 256), round_robin, fcfs"
    broken = evaluate((load_scenario(None, SMALL), TARGET, {**overrides, "hardware.gpu": "no-such-gpu"}, 3, 1, 0.05))
    assert broken.error and "no-such-gpu" in broken.error


def test_the_plan_command_searches_and_writes_the_front(tmp_path):
    result = CliRunner().invoke(app, ["plan", "--search", "--trials", "3", "--gpu", "h100", "--tp", "1",
                                      "--total-gpus", "2", "--workers", "1", "--set", "workload.num_requests=100",
                                      "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "plan.json").read_text())
    assert written["question"] == "search" and written["pareto"] and written["launch"]


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")
def test_trials_run_as_ray_tasks_on_a_local_cluster():
    from kairos.plan.executors import RayExecutor
    executor = RayExecutor("local")
    result = search(load_scenario(None, SMALL), TARGET, small_space(), trials=2, executor=executor)
    assert result.trials and all(t.error is None for t in result.trials)


def test_a_new_study_starts_from_the_layouts_that_fill_the_budget():
    from kairos.plan.search import anchors

    space = SearchSpace(("h200",), (1, 8), 32, disaggregated=True)
    layouts = anchors(load_scenario(None, SMALL), space)
    colocated = [(p["tp"], p["replicas"]) for p in layouts if p.get("mode") == "colocated"]
    assert colocated == [(1, 32), (8, 4)]
    pd = [(p["prefill_replicas"], p["prefill_tp"], p["decode_replicas"], p["decode_tp"])
          for p in layouts if p.get("mode") == "disaggregated"]
    assert pd == [(24, 1, 1, 8), (16, 1, 2, 8)]
    assert {p["prefill_max_num_seqs"] for p in layouts if p.get("mode") == "disaggregated"} == {64}
    result = search(load_scenario(None, SMALL), TARGET, small_space(), trials=2, executor=LocalExecutor(1))
    assert sorted((t.overrides["hardware.gpu"], t.overrides["cluster.replicas"]) for t in result.trials) == \
        [("h100", 2), ("h200", 2)]


def test_a_disaggregated_draw_sizes_both_pools_engines():
    import optuna

    from kairos.plan.search import draw

    space = SearchSpace(("h200",), (1, 8), 16, max_num_seqs=(128,), disaggregated=True, prefill_max_num_seqs=(1, 8))
    params = {"gpu": "h200", "mode": "disaggregated", "router": "round_robin", "policy": "fcfs", "prefill_tp": 1,
              "decode_tp": 8, "prefill_replicas": 4, "decode_replicas": 1, "max_num_seqs": 128,
              "prefill_max_num_seqs": 1}
    overrides, gpus = draw(optuna.trial.FixedTrial(params), space)
    pools = overrides["cluster.pools"]
    assert gpus == 12
    assert pools["prefill"] == {"replicas": 4, "tp": 1, "engine": {"max_num_batched_tokens": 2048, "max_num_seqs": 1}}
    assert pools["decode"] == {"replicas": 1, "tp": 8, "engine": {"max_num_seqs": 128}}


def fake_judge(job):
    """A deployment's verdict in microseconds: more GPUs per replica serve each user faster but fewer
    tokens per GPU; TP 1 on h100 fails. Its front is known: one point per TP on h200."""
    from kairos.plan.search import TrialResult, describe

    _, _, overrides, gpus, number, _ = job
    result = TrialResult(number, overrides, gpus, describe(overrides))
    tp, gpu = overrides["hardware.tp"], overrides["hardware.gpu"]
    if (gpu, tp) == ("h100", 1):
        result.error = "meets the SLO at no rate tried"
        return result
    speed = 1.5 if gpu == "h200" else 1.0
    result.tokens_per_gpu = speed * 1000 / tp * (1 - 0.01 * overrides["cluster.replicas"])
    result.tokens_per_user = speed * 20 * tp
    return result


class CountingExecutor:
    width = 3

    def __init__(self):
        self.judged = []

    def map(self, fn, jobs):
        jobs = list(jobs)
        self.judged += [json.dumps(job[2], sort_keys=True) for job in jobs]
        return map(fn, jobs)

    def close(self):
        pass


def test_the_search_logic_with_a_fake_judge_finds_the_known_front_and_judges_each_deployment_once():
    space = SearchSpace(("h100", "h200"), (1, 2, 4), 8)
    executor = CountingExecutor()
    result = search(load_scenario(None, SMALL), TARGET, space, trials=30, executor=executor, judge=fake_judge)
    assert len(executor.judged) == len(set(executor.judged)) == len(result.trials)  # no deployment twice
    assert len(result.trials) == 2 * (8 + 4 + 2)  # the whole space, smaller than the 30 trials asked for
    # Anchors first: every GPU x TP filling the 8-GPU budget.
    first = [(o["hardware.gpu"], o["hardware.tp"], o["cluster.replicas"]) for o in map(json.loads, executor.judged[:6])]
    assert first == [("h100", 1, 8), ("h100", 2, 4), ("h100", 4, 2), ("h200", 1, 8), ("h200", 2, 4), ("h200", 4, 2)]
    failed = [t for t in result.trials if t.error is not None]
    assert failed and all(t.overrides["hardware.gpu"] == "h100" and t.overrides["hardware.tp"] == 1 for t in failed)
    ok = [t for t in result.trials if t.error is None]
    assert ok == result.trials[:len(ok)] and [t.tokens_per_gpu for t in ok] == sorted((t.tokens_per_gpu for t in ok),
                                                                                       reverse=True)
    # The front: on h200, for each TP tried, its fewest replicas (the most tokens per GPU at that speed).
    front = {(t.overrides["hardware.gpu"], t.overrides["hardware.tp"], t.overrides["cluster.replicas"])
             for t in result.pareto}
    for gpu, tp, replicas in front:
        assert gpu == "h200"
        assert replicas == min(t.overrides["cluster.replicas"] for t in ok
                               if (t.overrides["hardware.gpu"], t.overrides["hardware.tp"]) == (gpu, tp))
    assert {tp for _, tp, _ in front} == {1, 2, 4}
