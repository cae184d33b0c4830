"""Closed-loop load (`workload.concurrency`, `kairos bench --concurrency`): at most C requests
in flight, sent in the order they fell due, TTFT from the send; and its replay in validate."""

from __future__ import annotations

import json

import pytest

from cli_helpers import kairos
from test_bench_fake_server import FakeServer
from test_bench_loadgen import FakeSend, run
from test_sim_concurrency import assert_closed_loop_at_most

from kairos.bench import RequestLine, load_measured_run, write_measured_run
from kairos.workload import RequestSpec


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # The fake server is on loopback; a proxy from the environment must not intercept.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_each_end_sends_the_next_request_due_in_workload_order():
    specs = [RequestSpec(f"r{i}", 0.0, 8, 1) for i in range(9)]
    send = FakeSend(service_s=0.02)
    load = run(specs, send, max_concurrency=3)
    assert send.most_in_flight == 3
    sends = [s.result.sent_ts for s in load.sent]
    assert sends == sorted(sends)  # workload order
    ends = sorted(s.result.token_ts[-1] for s in load.sent)
    # The (i+1)-th send waits for the (i+1-C)-th end.
    assert all(sends[i] >= ends[i - 3] for i in range(3, 9))
    assert max(sends[:3]) < ends[0]


def test_follow_up_turns_and_failed_requests_need_and_free_a_slot():
    # One slot: the turn after a is due when a ends, later than c and d (due at 0).
    specs = [RequestSpec("a", 0.0, 8, 1), RequestSpec("b", 0.0, 8, 1, after="a"),
             RequestSpec("c", 0.0, 8, 1), RequestSpec("d", 0.0, 8, 1)]
    send = FakeSend(service_s=0.02, fail={"a", "c"})
    load = run(specs, send, max_concurrency=1)
    assert send.most_in_flight == 1
    order = sorted(load.sent, key=lambda s: s.result.sent_ts)
    assert [s.spec.request_id for s in order] == ["a", "c", "d", "b"]
    assert order[0].result.error == "HTTP 500" and order[3].result.error is None


@pytest.mark.parametrize("option", [("--concurrency", "2"), ("--max-concurrency", "2"),
                                    ("--set", "workload.concurrency=2")])
def test_bench_keeps_at_most_c_in_flight_and_times_from_the_send(capsys, tmp_path, option):
    run_dir = tmp_path / "run"
    # Each request takes about 0.02 + 3 x 0.1 s: the last pair waits two of those for a slot.
    with FakeServer(ttft_s=0.02, itl_s=0.1) as server:
        code, out, err = kairos(
            capsys, "bench", "--url", server.url, "--num-requests", "6", "--rate", "inf", *option,
            "--set", "workload.input_len=16", "--set", "workload.output_len=4",
            "--set", "workload.prefixes=null", "-q", "-o", str(run_dir))
    assert code == 0, err
    assert len(server.requests) == 6
    measured = load_measured_run(run_dir)
    records = [r.to_record() for r in measured.requests]
    assert all(r.finished for r in records)
    assert_closed_loop_at_most(records, 2)
    first_end = min(r.finish_s for r in records)
    assert sum(r.arrival_s < first_end for r in records) == 2
    # TTFT starts at the send: no request's includes its wait for a slot (>= 0.6 s for
    # the last pair); the loose bound allows for a busy machine.
    assert all(0.02 <= r.first_token_s - r.arrival_s < 0.3 for r in records)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["bench"]["send_lag_ms"]["p99"] >= 600  # the last pair's wait
    assert report["bench"]["max_concurrency"] == 2
    assert report["scenario"]["workload"]["concurrency"] == 2
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["kairos_bench"]["max_concurrency"] == 2
    assert meta["kairos_bench"]["workload"]["concurrency"] == 2


def test_open_loop_bench_records_no_cap(capsys, tmp_path):
    with FakeServer(ttft_s=0.0, itl_s=0.0) as server:
        code, _, err = kairos(capsys, "bench", "--url", server.url, "--num-requests", "3",
                              "--rate", "inf", "-q", "-o", str(tmp_path))
    assert code == 0, err
    assert json.loads((tmp_path / "meta.json").read_text())["kairos_bench"]["max_concurrency"] is None


def test_validate_replays_a_closed_loop_run_behind_the_same_gate(tmp_path):
    from kairos.scenario.run import build_simulation, resolve_deployment
    from kairos.validate.replay import replay_scenario, replay_specs

    # Six requests the client sent at once; the replay lets two at a time in.
    lines = [RequestLine(f"r{i}", 512, 64, None, 10.0, None, 10.1, 10.5) for i in range(6)]
    meta = {"schema_version": 1, "model": "llama-3.1-8b",
            "engine_kwargs": {"max_num_seqs": 8, "max_num_batched_tokens": 2048},
            "kv_cache": {"block_size": 16, "enable_prefix_caching": True},
            "hardware": {"device_name": "NVIDIA GeForce RTX 4090"}}
    in_flight = {}
    for name, concurrency in (("open", None), ("closed", 2)):
        meta["kairos_bench"] = {"max_concurrency": concurrency}
        write_measured_run(tmp_path / name, meta, lines)
        run = load_measured_run(tmp_path / name)
        scenario = replay_scenario(run)
        assert scenario.workload.concurrency == concurrency
        records = build_simulation(scenario, resolve_deployment(scenario), replay_specs(run)).run().records
        assert all(r.finished for r in records)
        in_flight[name] = sum(r.arrival_s == 0.0 for r in records)
        if concurrency:
            assert_closed_loop_at_most(records, concurrency)
    assert in_flight == {"open": 6, "closed": 2}
