"""Measured-run files: the shared vLLM run loads, ours round-trip, malformed input is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kairos.bench import (
    MeasuredRun,
    RequestLine,
    load_measured_run,
    measure,
    write_measured_run,
)
from kairos.errors import KairosError
from kairos.workload.spec import Span

SHARED_RUN = (Path(__file__).resolve().parents[2] / "shared" / "data" / "validation"
              / "vllm-0.19-rtx4090-llama-3.1-8b")
needs_data = pytest.mark.skipif(not SHARED_RUN.exists(), reason="shared data not present")

GOOD = {"request_id": "r0", "input_toks": 10, "output_toks": 5, "arrival_time": 1700000000.0,
        "queued_ts": 100.0, "scheduled_ts": 100.5, "first_token_ts": 101.0,
        "last_token_ts": 103.0}


@needs_data
def test_loads_the_shared_vllm_run():
    run = load_measured_run(SHARED_RUN)
    assert isinstance(run, MeasuredRun)
    assert run.meta["model"] == "meta-llama/Llama-3.1-8B"
    assert run.meta["engine_kwargs"]["max_num_seqs"] == 256
    assert len(run.requests) == len(run.completed) == 300
    assert min(r.arrival_s for r in run.requests) == 0.0
    assert all(r.queue_s is not None and r.queue_s >= 0 for r in run.requests)

    first = json.loads((SHARED_RUN / "requests.jsonl").read_text().splitlines()[0])
    r0 = run.requests[0]
    assert r0.request_id == first["request_id"] == "bench-0"
    assert (r0.input_tokens, r0.output_tokens) == (first["input_toks"], first["output_toks"])
    assert r0.ttft_s == pytest.approx(first["first_token_ts"] - first["queued_ts"])
    assert r0.e2e_s == pytest.approx(first["last_token_ts"] - first["queued_ts"])
    assert r0.tpot_s == pytest.approx((first["last_token_ts"] - first["first_token_ts"])
                                      / (first["output_toks"] - 1))
    mean_ttft = sum(r.ttft_s for r in run.requests) / 300
    assert 50 < mean_ttft < 80  # heavily overloaded, as the data README says

    record = r0.to_record()
    assert record.finished and record.ttft_s == pytest.approx(r0.ttft_s)
    assert record.queue_s == pytest.approx(r0.queue_s) and record.tpot_s == pytest.approx(r0.tpot_s)


def test_written_run_round_trips(tmp_path):
    lines = [
        RequestLine("a", 10, 4, 1700000000.0, 50.0, None, 50.2, 50.5),
        RequestLine("b", 20, 1, 1700000000.5, 50.5, None, 50.6, 50.6),
        RequestLine("c", 30, 2, 1700000001.0, 51.0, None, 51.1, None, error="timeout after 5 s"),
    ]
    meta = {"schema_version": 1, "model": "m", "num_requests": 3}
    write_measured_run(tmp_path, meta, lines)
    run = load_measured_run(tmp_path)
    assert run.meta == meta
    assert run.requests == measure(lines)
    a, b, c = run.requests
    assert (a.arrival_s, b.arrival_s, c.arrival_s) == (0.0, 0.5, 1.0)
    assert a.ttft_s == pytest.approx(0.2) and a.tpot_s == pytest.approx(0.1)
    assert b.tpot_s is None and b.completed  # one token: no TPOT
    assert not c.completed and c.error == "timeout after 5 s" and c.e2e_s is None
    record = c.to_record()
    assert not record.finished and record.rejected_reason == "timeout after 5 s"
    assert [r.request_id for r in run.completed] == ["a", "b"]


def test_shared_spans_round_trip_and_stale_ones_go(tmp_path):
    lines = [RequestLine("a", 300, 4, None, 50.0, None, 50.2, 50.5),
             RequestLine("b", 300, 4, None, 50.5, None, 50.6, 50.9)]
    meta = {"schema_version": 1}
    shared = {"a": (Span(7, 0, 256),), "b": (Span(7, 0, 256), Span(2**63, 256, 16))}
    paths = write_measured_run(tmp_path, meta, lines, shared)
    assert [p.name for p in paths] == ["meta.json", "requests.jsonl", "shared_spans.jsonl"]
    assert load_measured_run(tmp_path).shared == shared
    # Rewritten without spans: the old file would describe requests it no longer holds.
    write_measured_run(tmp_path, meta, lines)
    assert not (tmp_path / "shared_spans.jsonl").exists()
    assert load_measured_run(tmp_path).shared == {}


@pytest.mark.parametrize(
    "row, message",
    [
        ({"request_id": "nope", "shared": [[1, 0, 16]]}, "request_id 'nope' is not a request"),
        ({"request_id": "r1", "shared": [[1, -1, 16]]}, "shared must be a list of [key, start, length]"),
        ({"request_id": "r1", "shared": [[1, 0]]}, "shared must be a list of [key, start, length]"),
        ({"request_id": "r1", "shared": "all"}, "shared must be a list of [key, start, length]"),
        ({"request_id": "r0", "shared": []}, "duplicate request_id 'r0'"),
        ("{oops", "invalid JSON"),
    ],
)
def test_malformed_shared_spans_are_named_by_file_and_line(tmp_path, row, message):
    write_run(tmp_path, [GOOD, {**GOOD, "request_id": "r1"}])
    (tmp_path / "shared_spans.jsonl").write_text(
        json.dumps({"request_id": "r0", "shared": [[1, 0, 16]]}) + "\n"
        + (row if isinstance(row, str) else json.dumps(row)) + "\n")
    with pytest.raises(KairosError) as info:
        load_measured_run(tmp_path)
    assert "shared_spans.jsonl:2" in str(info.value) and message in str(info.value)


def write_run(tmp_path: Path, rows: list, meta: object = None) -> Path:
    (tmp_path / "meta.json").write_text(json.dumps({"schema_version": 1} if meta is None else meta))
    text = "\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows)
    (tmp_path / "requests.jsonl").write_text(text + "\n")
    return tmp_path


def error_of(tmp_path: Path, rows: list, meta: object = None) -> str:
    with pytest.raises(KairosError) as info:
        load_measured_run(write_run(tmp_path, rows, meta))
    return str(info.value)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("{not json", "requests.jsonl:2: invalid JSON"),
        ("[1, 2]", "requests.jsonl:2: expected a JSON object, got list"),
        ({k: v for k, v in GOOD.items() if k != "queued_ts"}, "requests.jsonl:2: missing field 'queued_ts'"),
        ({k: v for k, v in GOOD.items() if k != "output_toks"}, "requests.jsonl:2: missing field 'output_toks'"),
        ({**GOOD, "input_toks": -1}, "requests.jsonl:2: input_toks must be an integer >= 0"),
        ({**GOOD, "output_toks": 2.5}, "requests.jsonl:2: output_toks must be an integer >= 0"),
        ({**GOOD, "queued_ts": "soon"}, "requests.jsonl:2: queued_ts must be a finite number"),
        ('{"request_id": "r1", "input_toks": 1, "output_toks": 1, "queued_ts": NaN}',
         "requests.jsonl:2: queued_ts must be a finite number"),
        ({**GOOD, "first_token_ts": None}, "requests.jsonl:2: a completed request needs"),
        ({**GOOD, "last_token_ts": 100.9}, "requests.jsonl:2: last_token_ts 100.9 is before first_token_ts"),
        ({**GOOD, "scheduled_ts": 99.0}, "requests.jsonl:2: scheduled_ts 99.0 is before queued_ts"),
        ({**GOOD, "error": 3}, "requests.jsonl:2: error must be a string or null"),
        (GOOD, "requests.jsonl:2: duplicate request_id 'r0'"),
    ],
)
def test_malformed_lines_are_named_by_file_and_line(tmp_path, bad, message):
    assert message in error_of(tmp_path, [GOOD, bad])


def test_malformed_meta_and_missing_files(tmp_path):
    assert "meta.json:1: missing field 'schema_version'" in error_of(tmp_path, [GOOD], {"model": "m"})
    assert "unsupported schema_version 2" in error_of(tmp_path, [GOOD], {"schema_version": 2})
    assert "expected a JSON object" in error_of(tmp_path, [GOOD], [1])
    (tmp_path / "meta.json").write_text('{\n  "schema_version": 1,\n}')
    with pytest.raises(KairosError, match=r"meta\.json:3: invalid JSON"):
        load_measured_run(tmp_path)
    assert "requests.jsonl: no requests" in error_of(tmp_path, ["", "  "])
    (tmp_path / "requests.jsonl").unlink()
    write_run(tmp_path, [GOOD])
    (tmp_path / "meta.json").unlink()
    with pytest.raises(KairosError, match=r"meta\.json: missing \(a measured run holds"):
        load_measured_run(tmp_path)
    with pytest.raises(KairosError, match="no such run directory"):
        load_measured_run(tmp_path / "nowhere")


def test_failed_lines_may_lack_token_times(tmp_path):
    failed = {**GOOD, "request_id": "r1", "first_token_ts": None, "last_token_ts": None,
              "output_toks": 0, "error": "HTTP 503: overloaded"}
    run = load_measured_run(write_run(tmp_path, [GOOD, failed]))
    assert [r.error for r in run.requests] == [None, "HTTP 503: overloaded"]
    assert run.requests[1].ttft_s is None and run.requests[0].queue_s == pytest.approx(0.5)


def test_declared_engine_facts_win_over_what_kairos_serve_reports():
    from kairos.bench.results import EngineFacts

    reported = {"max_num_seqs": 64, "num_gpu_blocks": 512, "block_size": 16, "device": "cpu",
                "enable_prefix_caching": True, "max_num_batched_tokens": 256}
    facts = EngineFacts(max_num_seqs=8).completed_from(reported)
    assert facts.max_num_seqs == 8 and facts.num_gpu_blocks == 512 and facts.device_name == "cpu"
    assert EngineFacts().completed_from(None) == EngineFacts()
