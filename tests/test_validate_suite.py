"""The measured-silicon suite: rows read from aiconfigurator-core, replayed, summarised."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from cli_helpers import kairos, one_line_error
from kairos.errors import KairosError
from kairos.validate.suite import (PROMPTS_PER_CLIENT, attach_peer, load_peer, load_rows, row_requests, run_row,
                                  run_suite)

pytest.importorskip("aiconfigurator_core")


def test_rows_carry_the_deployment_and_the_load():
    rows = load_rows("vllm", ["h100", "h200"])
    assert rows and all(r.gpu in ("h100", "h200") and r.backend == "vllm" for r in rows)
    assert all(r.concurrency >= 1 and r.isl > 0 and r.osl > 0 and r.ttft_ms > 0 and r.tpot_ms > 0 for r in rows)
    moe_dp = [r for r in rows if r.model == "MiniMaxAI/MiniMax-M2.5" and r.dp > 1]
    assert moe_dp and all(r.ep and r.tp * r.dp >= 4 for r in moe_dp)


def test_a_synchronized_wave_then_staggered_rounds():
    row = next(r for r in load_rows("vllm", ["h100"]) if r.concurrency == 8)
    specs, measured = row_requests(row)
    wave, stagger = specs[:8], specs[8:16]
    assert all(s.output_len == row.osl and s.request_id in measured for s in wave)
    assert [s.output_len for s in stagger] == sorted(s.output_len for s in stagger)
    assert stagger[-1].output_len == row.osl and stagger[0].output_len < row.osl
    assert not measured & {s.request_id for s in stagger}
    assert len(measured) == PROMPTS_PER_CLIENT * 8 and len(specs) == len(measured) + 8


def test_a_row_is_simulated_and_compared():
    row = min((r for r in load_rows("vllm", ["h100"]) if r.model == "Qwen/Qwen3-32B"),
              key=lambda r: r.concurrency * (r.isl + r.osl))
    entry = run_row(row)
    assert entry["skipped"] is None
    for metric in ("ttft_ms", "tpot_ms"):
        cell = entry[metric]
        assert cell["simulated"] > 0
        assert cell["error_pct"] == pytest.approx(100 * (cell["simulated"] - cell["measured"]) / cell["measured"])


def test_summary_counts_skipped_rows():
    row = min((r for r in load_rows("vllm", ["h100"]) if r.model == "Qwen/Qwen3-32B"),
              key=lambda r: r.concurrency * (r.isl + r.osl))
    unknown = replace(row, id="unknown", model="no-org/no-such-model-xyz")
    result = run_suite([row, unknown], jobs=1)
    skipped = next(e for e in result["rows"] if e["id"] == "unknown")
    assert "no-such-model" in skipped["skipped"]
    overall = result["summary"]["all"]
    assert (overall["rows"], overall["simulated"], overall["simulated_pct"]) == (2, 1, 50.0)
    assert overall["tpot_ms"]["median_abs_error_pct"] >= 0


def test_suite_command_errors_are_one_line(capsys):
    assert "--against RUN_DIR or --suite" in one_line_error(capsys, "validate")
    assert "unknown suite 'silicon'" in one_line_error(capsys, "validate", "--suite", "silicon")
    assert "not both" in one_line_error(capsys, "validate", "--suite", "aiconfigurator", "--against", ".")
    assert "no measured aggregated vllm rows" in one_line_error(capsys, "validate", "--suite", "aiconfigurator",
                                                                 "--gpu", "rtx-4090")


def test_suite_command_writes_suite_json(capsys, tmp_path, monkeypatch):
    # Two small rows, so the command runs in a second: the CLI path, table and file.
    rows = sorted((r for r in load_rows("vllm", ["h100"]) if r.model == "Qwen/Qwen3-32B"),
                  key=lambda r: r.concurrency * (r.isl + r.osl))[:2]
    monkeypatch.setattr("kairos.cli.validate_cmd.load_rows", lambda backend, gpus, mode="agg": rows)
    code, out, _ = kairos(capsys, "validate", "--suite", "aiconfigurator", "--jobs", "1",
                          "--prompts-per-client", "2", "-o", str(tmp_path))
    assert code == 0 and "Measured-silicon suite" in out
    result = json.loads((tmp_path / "suite.json").read_text())
    assert [e["id"] for e in result["rows"]] == [r.id for r in rows]
    assert result["prompts_per_client"] == 2 and result["summary"]["all"]["simulated"] == 2


def _small_rows(n: int):
    return sorted((r for r in load_rows("vllm", ["h100"]) if r.model == "Qwen/Qwen3-32B"),
                  key=lambda r: r.concurrency * (r.isl + r.osl))[:n]


def test_a_peer_estimate_stands_beside_ours(tmp_path):
    first, second = _small_rows(2)
    result = run_suite([first, second], jobs=1, prompts_per_client=2)
    estimates = {first.id: {"ttft_ms": 2 * first.ttft_ms, "tpot_ms": first.tpot_ms},
                 second.id: {"skipped": "no data for this system"}}
    attach_peer(result, "peer 1.0", estimates)
    answered, skipped = result["rows"]
    assert answered["aiconfigurator"]["ttft_ms"] == {"estimated": 2 * first.ttft_ms, "error_pct": pytest.approx(100.0)}
    assert answered["aiconfigurator"]["tpot_ms"]["error_pct"] == pytest.approx(0.0)
    assert skipped["aiconfigurator"] == {"skipped": "no data for this system"}
    both = result["summary"]["all"]["head_to_head"]
    assert both["rows"] == 1 and result["peer"] == "peer 1.0"
    assert both["aiconfigurator_ttft_ms"]["median_abs_error_pct"] == pytest.approx(100.0)
    assert both["kairos_tpot_ms"]["median_abs_error_pct"] == pytest.approx(abs(answered["tpot_ms"]["error_pct"]))


def test_peer_files_are_checked(tmp_path):
    path = tmp_path / "peer.json"
    path.write_text(json.dumps({"source": "x", "rows": {"1": {"ttft_ms": -1, "tpot_ms": 2}}}))
    with pytest.raises(KairosError, match="positive numbers"):
        load_peer(path)
    path.write_text("{")
    with pytest.raises(KairosError, match="cannot read peer estimates"):
        load_peer(path)


def test_suite_command_with_a_peer(capsys, tmp_path, monkeypatch):
    rows = _small_rows(1)
    monkeypatch.setattr("kairos.cli.validate_cmd.load_rows", lambda backend, gpus, mode="agg": rows)
    peer = tmp_path / "peer.json"
    peer.write_text(json.dumps({"source": "aiconfigurator 0.12.0 estimate",
                                "rows": {rows[0].id: {"ttft_ms": 10.0, "tpot_ms": 5.0}}}))
    code, out, _ = kairos(capsys, "validate", "--suite", "aiconfigurator", "--jobs", "1", "--prompts-per-client", "2",
                          "--peer", str(peer), "-o", str(tmp_path))
    assert code == 0 and "peer: aiconfigurator 0.12.0 estimate" in out
    entry = json.loads((tmp_path / "suite.json").read_text())["rows"][0]
    assert entry["aiconfigurator"]["tpot_ms"]["estimated"] == 5.0
    assert "--peer goes with --suite" in one_line_error(capsys, "validate", "--peer", str(peer))


def test_disaggregated_rows_run_as_two_pools():
    rows = load_rows("sglang", ["h100"], mode="disagg")
    assert rows and all(r.prefill is not None and r.decode is not None for r in rows)
    row = min((r for r in rows if not (r.prefill.dp > 1 or r.prefill.ep or r.decode.dp > 1 or r.decode.ep)),
              key=lambda r: r.concurrency * (r.isl + r.osl))
    entry = run_row(replace(row, concurrency=2), prompts_per_client=2)
    assert entry["skipped"] is None and entry["pools"]["prefill"]["workers"] == row.prefill.workers
    assert entry["ttft_ms"]["simulated"] > 0 and entry["tpot_ms"]["simulated"] > 0


def test_disaggregated_rows_kairos_cannot_express_are_skipped_with_a_reason():
    rows = load_rows("vllm", mode="disagg")
    measured = next(r for r in load_rows("sglang", ["h100"], mode="disagg") if r.concurrency)
    pooled_dp = replace(measured, prefill=replace(measured.prefill, dp=2))
    assert "data-parallel attention or experts" in run_row(pooled_dp)["skipped"]
    unknown_load = next(r for r in rows if not r.concurrency)
    assert "no client concurrency" in run_row(replace(unknown_load, prefill=replace(unknown_load.prefill, dp=1),
                                                      decode=replace(unknown_load.decode, dp=1)))["skipped"]
    with pytest.raises(KairosError, match="suite mode must be one of agg, disagg"):
        load_rows("vllm", mode="both")
