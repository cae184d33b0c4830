"""`kairos bench` end to end against the fake OpenAI-compatible server."""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import pytest

from cli_helpers import kairos, one_line_error
from test_bench_fake_server import (
    DISCONNECT,
    ERROR_CHUNK,
    HANG,
    HTTP_500,
    MAX_MODEL_LEN,
    MODEL,
    OK,
    FakeServer,
)

from kairos.bench import load_measured_run
from kairos.workload import RequestSpec, save_kairos_jsonl

SHARED_RUN = (Path(__file__).resolve().parents[2] / "shared" / "data" / "validation"
              / "vllm-0.19-rtx4090-llama-3.1-8b")
LINE_KEYS = {"request_id", "input_toks", "output_toks", "arrival_time", "queued_ts",
             "scheduled_ts", "first_token_ts", "last_token_ts"}


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # The fake server is on loopback; a proxy from the environment must not intercept.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def lines_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "requests.jsonl").read_text().splitlines()]


def trace(tmp_path: Path, specs: list[RequestSpec]) -> str:
    path = tmp_path / "trace.jsonl"
    save_kairos_jsonl(path, specs)
    return f"trace:{path}"


def test_bench_writes_a_measured_run_and_report(capsys, tmp_path):
    run_dir = tmp_path / "run"
    with FakeServer(ttft_s=0.05, itl_s=0.01) as server:
        code, out, err = kairos(
            capsys, "bench", "--url", server.url + "/v1/", "--num-requests", "6", "--rate", "40",
            "--set", "workload.input_len=32", "--set", "workload.output_len=8",
            "--max-num-seqs", "64", "--block-size", "16", "--gpu", "rtx-4090", "-o", str(run_dir))
    assert code == 0, err
    assert "TTFT" in out and MODEL in out
    # The default workload's system prompts are shared spans, recorded for the replay.
    assert {p.name for p in run_dir.iterdir()} == {
        "meta.json", "requests.jsonl", "shared_spans.jsonl", "report.json", "requests.csv"}

    lines = lines_of(run_dir)
    assert len(lines) == 6
    assert all(set(line) == LINE_KEYS for line in lines)
    assert all(line["scheduled_ts"] is None and line["output_toks"] == 8 for line in lines)
    # The fake server runs in this process, so its receive times share the client's
    # monotonic clock: TTFT runs from the send, before the server got the request, to
    # the first token, at least ttft_s after that. Upper bounds are loose: sleeps
    # overshoot on a busy machine.
    for received, line in zip(sorted(server.requests, key=lambda r: r.received_ts),
                              sorted(lines, key=lambda line: line["queued_ts"])):
        assert line["queued_ts"] <= received.received_ts
        assert line["first_token_ts"] >= received.received_ts + 0.05
        ttft = line["first_token_ts"] - line["queued_ts"]
        tpot = (line["last_token_ts"] - line["first_token_ts"]) / (line["output_toks"] - 1)
        # Lower bounds come from the server's delays; upper bounds only catch gross errors.
        assert 0.05 <= ttft < 1.0
        assert 0.009 <= tpot < 0.3  # client-side jitter may shorten a gap a little
        # What went over the wire: exact lengths asked for, token-id prompts of prompt_len.
        body = received.body
        assert body["model"] == MODEL and body["stream"] is True
        assert body["max_tokens"] == body["min_tokens"] == 8 and body["ignore_eos"] is True
        assert len(body["prompt"]) == line["input_toks"] == 32 + 256  # message + system prompt
        assert all(isinstance(t, int) and 1000 <= t < 32000 for t in body["prompt"])

    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["schema_version"] == 1 and meta["model"] == MODEL and meta["num_requests"] == 6
    assert meta["server_version"] == "fake-1.0"
    assert meta["engine_kwargs"] == {"model": MODEL, "max_model_len": MAX_MODEL_LEN,
                                     "max_num_seqs": 64}
    assert meta["kv_cache"] == {"block_size": 16}
    assert meta["hardware"] == {"device_name": "NVIDIA GeForce RTX 4090 24GB"}  # catalog name
    assert meta["kairos_bench"]["workload"]["output_len"] == {"kind": "fixed", "value": 8}
    assert meta["kairos_bench"]["failed"] == 0

    report = json.loads((run_dir / "report.json").read_text())
    assert report["schema"] == "kairos.report/v1"
    summary = report["summary"]
    assert summary["num_requests"] == summary["completed"] == 6
    assert 50 <= summary["ttft_ms"]["mean"] < 150
    assert 9 <= summary["tpot_ms"]["mean"] < 30
    assert 9 <= summary["itl_ms"]["p50"] < 30
    assert report["bench"]["url"] == server.url and report["bench"]["failed"] == 0
    assert set(report["scenario"]) == {"workload", "slo", "seed"}
    # What the client cannot see and this server does not publish is null, and says so.
    assert summary["queue_ms"] is None and summary["preemptions"] is None
    assert summary["prefix_cache_hit_rate"] is None and "not measured" in out
    with (run_dir / "requests.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 6

    run = load_measured_run(run_dir)  # the files round-trip through the reader
    assert [r.request_id for r in run.requests] == [line["request_id"] for line in lines]
    assert all(r.completed and r.output_tokens == 8 for r in run.requests)


def test_the_servers_counters_give_prefix_hits_and_preemptions(capsys, tmp_path):
    with FakeServer(ttft_s=0.0, itl_s=0.001, prefix_hit_fraction=0.25) as server:
        code, _, err = kairos(capsys, "bench", "--url", server.url, "--num-requests", "5", "--rate", "100",
                              "--set", "workload.input_len=32", "--set", "workload.output_len=4",
                              "-o", str(tmp_path / "run"))
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "report.json").read_text())["summary"]
    assert summary["prefix_cache_hit_rate"] == pytest.approx(0.25) and summary["preemptions"] == 5
    # meta.json keeps them, for `kairos validate` to compare with the simulation's.
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["kairos_bench"]["server_counters"] == {"prefix_cache_hit_rate": pytest.approx(0.25), "preemptions": 5}


@pytest.mark.skipif(not SHARED_RUN.exists(), reason="shared data not present")
def test_line_keys_are_those_of_the_shared_vllm_run():
    first = json.loads((SHARED_RUN / "requests.jsonl").read_text().splitlines()[0])
    assert set(first) == LINE_KEYS


def test_trace_arrivals_are_paced_by_time_scale(capsys, tmp_path):
    specs = [RequestSpec(f"r{i}", 0.2 * i, 16, 2) for i in range(4)]
    with FakeServer(ttft_s=0.0, itl_s=0.001) as server:
        code, _, err = kairos(capsys, "bench", "--url", server.url, "--workload",
                              trace(tmp_path, specs), "--time-scale", "2", "-q",
                              "-o", str(tmp_path / "run"))
    assert code == 0, err
    sent = {line["request_id"]: line["queued_ts"] for line in lines_of(tmp_path / "run")}
    for i in range(4):
        assert sent[f"r{i}"] - sent["r0"] == pytest.approx(0.1 * i, abs=0.025)
    received = sorted(r.received_ts for r in server.requests)
    assert received[-1] - received[0] == pytest.approx(0.3, abs=0.03)


def test_follow_up_turn_is_sent_think_time_after_its_predecessor(capsys, tmp_path):
    specs = [RequestSpec("a", 0.0, 16, 6), RequestSpec("solo", 0.0, 16, 2),
             RequestSpec("b", 0.0, 40, 2, after="a", think_s=0.1)]
    # Through a scenario file this time: its workload and SLO sections are used.
    scenario = tmp_path / "scenario.yaml"
    path = trace(tmp_path, specs).removeprefix("trace:")
    scenario.write_text(f"workload: {{kind: trace, path: {path}}}\nslo: {{ttft_ms: 1}}\n")
    with FakeServer(ttft_s=0.01, itl_s=0.01) as server:
        code, _, err = kairos(capsys, "bench", str(scenario), "--url", server.url, "-q",
                              "-o", str(tmp_path / "run"))
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["scenario"]["slo"]["ttft_ms"] == 1
    assert report["summary"]["goodput"]["slo_attainment"] == 0.0  # no TTFT under 1 ms
    lines = {line["request_id"]: line for line in lines_of(tmp_path / "run")}
    wait = lines["b"]["queued_ts"] - lines["a"]["last_token_ts"]
    assert 0.1 <= wait < 0.2
    assert lines["solo"]["queued_ts"] < lines["a"]["last_token_ts"]  # open loop: not held back
    assert len(server.requests) == 3


def test_failed_requests_are_recorded_with_their_reason(capsys, tmp_path):
    # The fake server picks each request's fate from its max_tokens.
    fate = {3: OK, 4: HTTP_500, 5: DISCONNECT, 6: ERROR_CHUNK, 7: HANG}
    specs = [RequestSpec(f"r{n}", 0.0, 16, n) for n in fate]
    with FakeServer(ttft_s=0.0, itl_s=0.002,
                    plan=lambda index, body: fate[body["max_tokens"]]) as server:
        code, _, err = kairos(capsys, "bench", "--url", server.url, "--workload",
                                trace(tmp_path, specs), "--timeout", "0.5",
                                "-o", str(tmp_path / "run"))
    assert code == 0, err
    lines = {line["request_id"]: line for line in lines_of(tmp_path / "run")}
    assert "error" not in lines["r3"] and lines["r3"]["output_toks"] == 3
    assert lines["r4"]["error"] == "HTTP 500: engine exploded"
    assert lines["r5"]["error"].startswith("disconnected")
    assert lines["r6"]["error"] == "server error: out of memory"
    assert lines["r7"]["error"] == "timeout after 0.5 s"
    assert all(lines[f"r{n}"]["last_token_ts"] is None for n in (4, 5, 6, 7))
    assert "4 of 5 requests failed" in err and "1 HTTP 500" in err and "1 timeout" in err

    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["summary"]["completed"] == 1 and report["summary"]["rejected"] == 4
    assert report["bench"]["failures"] == {"HTTP 500": 1, "disconnected": 1, "server error": 1,
                                           "timeout after 0.5 s": 1}
    run = load_measured_run(tmp_path / "run")
    assert [r.request_id for r in run.completed] == ["r3"]
    with (tmp_path / "run" / "requests.csv").open() as handle:
        reasons = {row["request_id"]: row["rejected_reason"] for row in csv.DictReader(handle)}
    assert reasons["r3"] == "" and reasons["r4"] == "HTTP 500: engine exploded"


def test_multi_token_chunks_are_counted_from_usage(capsys, tmp_path):
    specs = [RequestSpec("r0", 0.0, 16, 9)]
    with FakeServer(ttft_s=0.0, itl_s=0.02, tokens_per_chunk=3) as server:
        code, _, err = kairos(capsys, "bench", "--url", server.url, "--workload",
                              trace(tmp_path, specs), "-q", "-o", str(tmp_path / "run"))
    assert code == 0, err
    (line,) = lines_of(tmp_path / "run")
    assert line["output_toks"] == 9
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["bench"]["short_outputs"] == 0
    # 3 chunks of 3 tokens 60 ms apart: 8 gaps, 6 of 20 ms and 2 of 0 (the first
    # chunk's); counting chunks instead would give gaps of 60 ms.
    itl = report["summary"]["itl_ms"]
    assert 18 <= itl["p50"] < 40
    # One request: its gaps add up to last - first token, so their mean is its TPOT.
    assert itl["mean"] == pytest.approx(report["summary"]["tpot_ms"]["mean"], rel=1e-4)


def test_line_separator_characters_inside_chunks_do_not_split_data_lines(capsys, tmp_path):
    # U+2028 and U+0085 are legal unescaped in JSON and in an SSE line; str.splitlines
    # (and httpx's aiter_lines) would cut the data line there.
    specs = [RequestSpec("r0", 0.0, 16, 6)]
    with FakeServer(ttft_s=0.0, itl_s=0.001, token_text="a\u2028b\x85c\u2029") as server:
        code, _, err = kairos(capsys, "bench", "--url", server.url, "--workload",
                              trace(tmp_path, specs), "-q", "-o", str(tmp_path / "run"))
    assert code == 0, err
    (line,) = lines_of(tmp_path / "run")
    assert line["output_toks"] == 6 and line["first_token_ts"] is not None


def test_text_prompts_and_chunk_counting_without_usage(capsys, tmp_path):
    specs = [RequestSpec("r0", 0.0, 50, 5)]
    with FakeServer(ttft_s=0.0, itl_s=0.001, usage=False) as server:
        code, _, err = kairos(capsys, "bench", "--url", server.url, "--workload",
                              trace(tmp_path, specs), "--prompt-format", "text", "--model", MODEL,
                              "-q", "-o", str(tmp_path / "run"))
    assert code == 0, err
    prompt = server.requests[0].body["prompt"]
    assert isinstance(prompt, str) and len(prompt.split()) == 50
    (line,) = lines_of(tmp_path / "run")
    assert line["output_toks"] == 5 and line["input_toks"] == 50


def test_unreachable_url_is_a_one_line_error(capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    line = one_line_error(capsys, "bench", "--url", f"http://127.0.0.1:{port}", "-q")
    assert f"cannot reach http://127.0.0.1:{port}: connection refused" in line


def test_bad_options_are_one_line_errors(capsys, tmp_path):
    line = one_line_error(capsys, "bench", "--url", "localhost:8000")
    assert "--url must start with http://" in line
    line = one_line_error(capsys, "bench", "--url", "http://127.0.0.1:1",
                          "--set", "engine.block_size=32")
    assert "bench reads only workload" in line
    with FakeServer() as server:
        line = one_line_error(capsys, "bench", "--url", server.url, "--model", "other")
    assert "does not serve model 'other'" in line and MODEL in line
    assert not server.requests


def test_warm_up_runs_every_step_size_before_the_measured_run(capsys, tmp_path):
    run_dir = tmp_path / "run"
    with FakeServer(ttft_s=0.0, itl_s=0.0) as server:
        code, _, err = kairos(
            capsys, "bench", "--url", server.url, "--num-requests", "3", "--rate", "100",
            "--set", "workload.input_len=20", "--set", "workload.output_len=2", "--set", "workload.prefixes=null",
            "--max-num-seqs", "4", "--max-num-batched-tokens", "12", "--warm-up", "-q", "-o", str(run_dir))
        received = [r.body for r in sorted(server.requests, key=lambda r: r.received_ts)]
    assert code == 0, err
    warm, measured = received[:-3], received[-3:]
    # Prompts of 1..12 tokens one at a time (one output token each), then bursts of 1..4 requests.
    assert [len(b["prompt"]) for b in warm[:12]] == list(range(1, 13))
    assert all(b["max_tokens"] == 1 for b in warm[:12])
    assert len(warm) == 12 + 1 + 2 + 3 + 4 and all(len(b["prompt"]) == 1 for b in warm[12:])
    assert all(len(b["prompt"]) == 20 for b in measured)
    # Only the measured requests are in the run; meta.json says the server was warmed.
    assert len(lines_of(run_dir)) == 3
    assert json.loads((run_dir / "meta.json").read_text())["kairos_bench"]["warmed_up"] is True


def test_warm_up_needs_the_engine_limits(capsys):
    with FakeServer() as server:
        line = one_line_error(capsys, "bench", "--url", server.url, "--num-requests", "2", "--warm-up", "-q")
    assert "--warm-up needs the server's --max-num-batched-tokens and --max-num-seqs" in line
