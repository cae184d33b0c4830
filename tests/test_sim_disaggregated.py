"""Prefill/decode disaggregation: decode-first routing, deciders, KV transfers over a shared link."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kairos.errors import KairosError
from kairos.scenario.load import load_scenario
from kairos.scenario.run import build_simulation, resolve_pools
from kairos.workload.spec import RequestSpec

from cli_helpers import kairos, one_line_error
from test_calibration_model import profile as calibration_profile

POOLS = {"prefill": {"replicas": 2}, "decode": {"replicas": 2, "engine": {"max_num_batched_tokens": 512}}}


def scenario(**disaggregation):
    overrides = {"cluster.pools": POOLS, "cluster.router": "least_outstanding"}
    if disaggregation:
        overrides["cluster.disaggregation"] = disaggregation
    return load_scenario(None, overrides)


def simulate(specs, fast=True, **disaggregation):
    spec = scenario(**disaggregation)
    sim = build_simulation(spec, resolve_pools(spec), specs, fast_decode=fast, check_invariants=True)
    return sim, sim.run()


def workload(n=40, seed=0):
    rng = np.random.default_rng(seed)
    t, specs = 0.0, []
    for i in range(n):
        t += float(rng.exponential(0.05))
        specs.append(RequestSpec(f"r{i}", t, int(rng.integers(16, 3000)), int(rng.integers(1, 200))))
    return specs


def test_every_request_finishes_and_every_block_comes_back():
    sim, result = simulate(workload())
    assert all(r.finished for r in result.records) and len(result.records) == 40
    pd = result.disaggregation
    assert pd["remote"] == 40 and pd["local"] == 0 and pd["kv_bytes"] > 0
    for replica in sim.replicas:  # held prefill blocks were released once their KV landed
        assert replica.core.kv.usage() == 0 and not replica.core.held
    # Prefill replicas ran one-token requests only; the clients' tokens all came from the decode pool.
    pools = {rep["pool"]: 0 for rep in result.replicas}
    for rep in result.replicas:
        pools[rep["pool"]] += rep["completed"]
    assert pools == {"prefill": 40, "decode": 40}
    assert {r.replica for r in result.records} <= {2, 3}


def test_the_fused_decode_path_matches_stepping_with_transfers():
    specs = workload(60, seed=3)
    _, fast = simulate(specs, fast=True)
    _, slow = simulate(specs, fast=False)
    assert [(r.request_id, r.first_token_s, r.finish_s, r.replica) for r in fast.records] == \
           [(r.request_id, r.first_token_s, r.finish_s, r.replica) for r in slow.records]
    assert fast.disaggregation == slow.disaggregation


def test_ttft_is_the_prefill_the_exposed_transfer_and_the_first_decode_step():
    spec = RequestSpec("alone", 0.0, 2000, 4)
    for overlap in (False, True):
        _, result = simulate([spec], overlap=overlap, link="eth-100g")
        record, pd = result.records[0], result.disaggregation
        parts = pd["prefill_ms"]["mean"] + pd["transfer_ms"]["mean"] + pd["first_decode_step_ms"]["mean"]
        assert record.ttft_s * 1e3 == pytest.approx(parts, rel=1e-9)
        if not overlap:
            # Alone on the link: latency + bytes / bandwidth of the whole prompt's KV (all but its last token).
            assert pd["transfer_ms"]["mean"] == pytest.approx(1e3 * (10e-6 + pd["kv_bytes"] / 12.5e9), rel=1e-6)
            no_overlap = pd["transfer_ms"]["mean"]
        else:
            assert pd["transfer_ms"]["mean"] < no_overlap / 10


def test_concurrent_transfers_into_one_decode_replica_share_its_link():
    alone = simulate([RequestSpec("a", 0.0, 4000, 2)], overlap=False, link="eth-100g")[1]
    # Two equal prompts prefilled at once on the two prefill replicas, both for decode replica 2.
    pools = {"prefill": {"replicas": 2, "router": "round_robin"}, "decode": {"replicas": 1}}
    spec = load_scenario(None, {"cluster.pools": pools, "cluster.disaggregation": {"overlap": False,
                                                                                    "link": "eth-100g"}})
    sim = build_simulation(spec, resolve_pools(spec), [RequestSpec("a", 0.0, 4000, 2),
                                                       RequestSpec("b", 0.0, 4000, 2)])
    pair = sim.run().disaggregation
    assert pair["transfer_ms"]["p99"] == pytest.approx(2 * alone.disaggregation["transfer_ms"]["mean"], rel=0.01)


def test_prefix_threshold_keeps_short_prompts_on_the_decode_replica():
    specs = [RequestSpec("short", 0.0, 100, 8), RequestSpec("long", 0.5, 3000, 8)]
    _, result = simulate(specs, decider="prefix_threshold", threshold_tokens=256)
    assert result.disaggregation["remote"] == 1 and result.disaggregation["local"] == 1
    _, never = simulate(specs, decider="never")
    assert never.disaggregation["remote"] == 0 and never.disaggregation["prefill_ms"] is None
    assert all(rep["completed"] == 0 for rep in never.replicas if rep["pool"] == "prefill")


def test_a_slower_link_means_a_longer_ttft():
    specs = workload(20, seed=5)
    fast_link = simulate(specs, link="nvlink4", overlap=False)[1]
    slow_link = simulate(specs, link="eth-100g", overlap=False)[1]
    mean = lambda result: sum(r.ttft_s for r in result.records) / len(result.records)  # noqa: E731
    assert mean(slow_link) > mean(fast_link)


def test_the_example_scenario_runs_and_reports_transfer_times(capsys, tmp_path):
    code, out, err = kairos(capsys, "simulate", "examples/disaggregated.yaml", "--num-requests", "60",
                            "-o", str(tmp_path))
    assert code == 0, err
    assert "KV transfer" in out and "decode pool" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["disaggregation"]["remote"] == 60 and report["disaggregation"]["transfer_ms"]["mean"] > 0
    assert set(report["deployment"]) >= {"prefill", "decode", "link", "decider"}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"cluster.replicas": 3}, "cluster.pools sets each pool's replicas"),
    ({"cluster.pools": None, "cluster.disaggregation": {"decider": "always"}}, "needs cluster.pools"),
    ({"cluster.disaggregation": {"decider": "sometimes"}}, "unknown disaggregation decider 'sometimes'"),
    ({"cluster.disaggregation": {"link": "carrier-pigeon"}}, "unknown link"),
    ({"cluster.pools": {**POOLS, "decode": {"engine": {"block_size": 32}}}}, "block_size differ"),
])
def test_bad_disaggregation_settings_are_one_line_errors(capsys, overrides, message):
    args = ["simulate", "--set", f"cluster.pools={POOLS}".replace("'", '"'), "--num-requests", "5"]
    for key, value in overrides.items():
        args += ["--set", f"{key}={value}".replace("'", '"').replace("None", "null")]
    line = one_line_error(capsys, *args)
    assert message in line


def test_pools_need_their_own_step_models(tmp_path):
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(calibration_profile()))
    with pytest.raises(KairosError, match="need a step-time model per pool's GPU"):
        resolve_pools(load_scenario(None, {"cluster.pools": POOLS, "perf.model": f"calibrated:{path}"}))
