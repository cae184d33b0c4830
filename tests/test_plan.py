"""kairos plan: SLO verdicts, the capacity search's answer, and the cheapest deployment for a rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kairos.cli.main import app
from kairos.errors import KairosError
from kairos.metrics import RequestRecord
from kairos.plan import SloTarget, cheapest, find_capacity, launch_plan
from kairos.plan.capacity import with_knob
from kairos.plan.cheapest import with_layout, with_pool_sizes
from kairos.scenario.load import load_scenario
from kairos.scenario.run import run_scenario

SMALL = {"workload.num_requests": 200}


def record(i: int, ttft: float, e2e: float, out: int = 11, finished: bool = True) -> RequestRecord:
    return RequestRecord(f"r{i}", 0.0, 100, out, first_token_s=ttft, finish_s=e2e if finished else None)


def test_an_slo_is_met_when_the_percentile_is_within_every_target():
    target = SloTarget(ttft_ms=100, tpot_ms=10, percentile=90)
    good = [record(i, 0.05, 0.1) for i in range(95)] + [record(95 + i, 0.5, 0.6) for i in range(5)]
    assert target.meets(good)  # 5 % miss TTFT: p90 is within
    bad = [record(i, 0.05, 0.1) for i in range(80)] + [record(80 + i, 0.5, 0.6) for i in range(20)]
    assert not target.meets(bad)
    assert not target.meets(good[:-1] + [record(99, 0.05, 0.1, finished=False)])  # every request must finish
    assert target.observed_ms(good)["ttft"] == pytest.approx(50.0)
    with pytest.raises(KairosError, match="needs an SLO"):
        SloTarget()
    with pytest.raises(KairosError, match="percentile"):
        SloTarget(ttft_ms=1, percentile=0)


def test_fail_fast_stops_only_once_one_metric_cannot_meet_its_percentile():
    target = SloTarget(ttft_ms=100, tpot_ms=10, percentile=90)
    stop = target.fail_fast()
    # 100 requests: up to 11 misses of one metric are allowed; misses of different metrics count apart.
    assert not any(stop(record(i, 0.5, 0.51), 100) for i in range(11))           # TTFT misses only
    assert not any(stop(record(11 + i, 0.01, 1.0), 100) for i in range(11))       # TPOT misses only
    assert stop(record(30, 0.5, 0.51), 100)                                       # the 12th TTFT miss
    assert SloTarget(e2e_ms=1).fail_fast()(record(0, 0.0, 0.0, finished=False), 100)


def test_capacity_is_consistent_with_simulating_at_and_above_it():
    scenario = load_scenario(None, SMALL)
    target = SloTarget(ttft_ms=500, tpot_ms=50, percentile=90)
    result = find_capacity(scenario, target, tolerance=0.02)
    assert result.best is not None and result.first_failing is not None
    assert result.first_failing.knob <= result.best.knob * 1.02 + 1e-9
    assert result.knob_name == "workload.rate"
    at = run_scenario(with_knob(scenario, "workload.rate", result.rate)).records
    above = run_scenario(with_knob(scenario, "workload.rate", result.rate * 1.1)).records
    assert target.meets(at) and not target.meets(above)
    # Probes past the answer stopped early; every probe at or below it ran to the end.
    assert all(not p.incomplete for p in result.probes if p.meets)


def test_capacity_brackets_down_from_a_rate_that_fails():
    scenario = load_scenario(None, {**SMALL, "workload.rate": 200.0})
    result = find_capacity(scenario, SloTarget(ttft_ms=500, percentile=90), tolerance=0.05)
    assert not result.probes[0].meets and result.best is not None and result.rate < 200 / 2


def test_the_cheapest_deployment_is_ranked_first_and_meets_the_slo_at_the_rate():
    scenario = load_scenario(None, SMALL)
    target = SloTarget(ttft_ms=500, tpot_ms=50)
    sized = cheapest(scenario, target, 30.0, gpus=["h100", "h200"], tps=[1], workers=1)
    assert [s.replicas is not None for s in sized] == [True, True]
    assert sized[0].gpus <= sized[1].gpus and sized[0].at_target.meets
    fewer = with_layout(scenario, sized[0].gpu, sized[0].tp, sized[0].replicas - 1)
    if sized[0].replicas > 1:  # one replica fewer misses
        assert not target.meets(run_scenario(with_knob(fewer, "workload.rate", 30.0)).records)
    by_price = cheapest(scenario, target, 30.0, gpus=["h100", "h200"], tps=[1], workers=1,
                        prices={"h100": 1.0, "h200": 100.0})
    assert by_price[0].gpu == "h100" and by_price[0].cost_per_hour == by_price[0].gpus * 1.0
    with pytest.raises(KairosError, match="no price for h200"):
        cheapest(scenario, target, 30.0, gpus=["h100", "h200"], tps=[1], prices={"h100": 1.0})


def test_fewest_doubles_then_bisects_to_the_smallest_count_that_meets():
    from kairos.plan.cheapest import _fewest

    asked = []

    def meets(n):
        asked.append(n)
        return f"probe {n}" if n >= 11 else None

    assert _fewest(meets, 64) == (11, "probe 11")
    assert asked[:5] == [1, 2, 4, 8, 16] and len(asked) <= 9
    assert _fewest(lambda n: None, 5) is None


def test_a_pd_scenario_sizes_both_pools_beside_the_colocated_candidates():
    example = Path(__file__).parent.parent / "examples" / "disaggregated.yaml"
    scenario = load_scenario(example, {"workload.num_requests": 200})
    target = SloTarget(ttft_ms=1000, tpot_ms=40)
    sized = cheapest(scenario, target, 20.0, gpus=["h100"], tps=[1], workers=1)
    pd = next(s for s in sized if s.disaggregated)
    assert (pd.prefill_gpu, pd.prefill_tp, pd.gpu, pd.tp) == ("h100", 1, "h100", 2)
    assert pd.at_target.meets and pd.gpus == pd.prefill_replicas * 1 + pd.replicas * 2
    assert pd.layout() == f"{pd.prefill_replicas}P(h100 tp1)+{pd.replicas}D(h100 tp2)"
    if pd.prefill_replicas > 1:  # one prefill replica fewer misses
        fewer = with_pool_sizes(scenario, pd.prefill_replicas - 1, pd.replicas)
        assert not target.meets(run_scenario(with_knob(fewer, "workload.rate", 20.0)).records)
    colocated = [s for s in sized if not s.disaggregated]
    assert [(s.gpu, s.tp) for s in colocated] == [("h100", 1)] and colocated[0].replicas is not None
    assert [s.gpus for s in sized if s.replicas is not None] == sorted(s.gpus for s in sized if s.replicas is not None)


def test_launch_commands_carry_the_simulated_engine_settings():
    scenario = load_scenario(None, {"hardware.tp": 2, "cluster.replicas": 3, "engine.max_num_seqs": 64,
                                    "engine.policy": "sjf"})
    lines = launch_plan(scenario)
    assert lines[0].startswith("vllm serve meta-llama/Llama-3.1-8B --tensor-parallel-size 2 --max-num-seqs 64")
    assert "KairosScheduler" in lines[0] and "x 3 replicas" in lines[0]


def test_the_plan_command_writes_plan_json(tmp_path):
    result = CliRunner().invoke(app, ["plan", "--capacity", "--set", "workload.num_requests=150",
                                      "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "plan.json").read_text())
    assert written["question"] == "capacity" and written["capacity"] > 0 and written["launch"]
    assert written["slo"] == {"ttft": 500.0, "tpot": 50.0, "percentile": 90.0}
    refused = CliRunner().invoke(app, ["plan"])
    assert isinstance(refused.exception, KairosError) and "--capacity, --target-rate R or --search" in str(refused.exception)


def test_a_deployment_that_misses_even_alone_is_given_up_on_quickly():
    scenario = load_scenario(None, SMALL)
    result = find_capacity(scenario, SloTarget(tpot_ms=0.5), tolerance=0.05)
    assert result.best is None and len(result.probes) <= 6
    assert result.first_failing.concurrency < 0.5


def test_launch_commands_for_pd_pools_name_each_pool_and_the_kv_connector():
    lines = launch_plan(load_scenario(Path(__file__).resolve().parents[1] / "examples" / "disaggregated.yaml"))
    assert len(lines) == 3 and all("NixlConnector" in line for line in lines[:2])
    assert "--tensor-parallel-size 1" in lines[0] and "prefill: x 2 replicas" in lines[0]
    assert "--tensor-parallel-size 2" in lines[1] and "--max-num-batched-tokens 512" in lines[1]
