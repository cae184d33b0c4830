"""`kairos validate`: replay of a measured run, validation.json format, bad run files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cli_helpers import kairos, one_line_error

RUN = Path(__file__).resolve().parents[2] / "shared" / "data" / "validation" / "vllm-0.19-rtx4090-llama-3.1-8b"
needs_run = pytest.mark.skipif(not RUN.exists(), reason="shared validation run not present")


@needs_run
def test_shared_vllm_run_is_predicted_within_the_bar(capsys, tmp_path):
    code, out, err = kairos(capsys, "validate", "--against", str(RUN), "-o", str(tmp_path))
    assert code == 0, err
    assert "TTFT" in out
    result = json.loads((tmp_path / "validation.json").read_text())
    assert result["schema"] == "kairos.validation/v1"
    assert result["gpu"] == "rtx-4090" and result["perf"] == "roofline"
    # vLLM's 2,588 blocks include its null block, which never holds KV.
    assert result["kv_blocks"] == 2587 and result["num_requests"] == 300
    for metric in ("ttft_ms", "tpot_ms", "e2e_ms"):
        assert set(result["metrics"][metric]) == {"mean", "p50", "p90", "p99"}
        cell = result["metrics"][metric]["mean"]
        assert set(cell) == {"measured", "simulated", "error_pct"}
        assert cell["error_pct"] == pytest.approx(100 * (cell["simulated"] - cell["measured"]) / cell["measured"],
                                                  abs=1e-3)
        assert abs(cell["error_pct"]) <= 15.0


@needs_run
def test_malformed_run_line_names_file_and_line(capsys, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    lines = (run / "requests.jsonl").read_text().splitlines()
    lines[4] = lines[4][:30]
    (run / "requests.jsonl").write_text("\n".join(lines) + "\n")
    line = one_line_error(capsys, "validate", "--against", str(run))
    assert f"{run / 'requests.jsonl'}:5" in line


def test_missing_run_directory(capsys, tmp_path):
    assert "no such run directory" in one_line_error(capsys, "validate", "--against", str(tmp_path / "nope"))


@needs_run
def test_unknown_device_needs_gpu_flag(capsys, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    meta = json.loads((run / "meta.json").read_text())
    meta["hardware"]["device_name"] = "Mystery Accelerator 9000"
    (run / "meta.json").write_text(json.dumps(meta))
    assert "--gpu" in one_line_error(capsys, "validate", "--against", str(run), "-q")


def test_replay_shares_the_prefixes_the_run_recorded(tmp_path):
    """Requests that shared a system prompt on the real server share it in the replay too."""
    from kairos.bench import load_measured_run, write_measured_run
    from kairos.workload.spec import Span

    lines, meta = _four_requests_run()
    cached = {}
    for name, shared in (("plain", None), ("shared", {line.request_id: (Span(1, 0, 256),) for line in lines})):
        write_measured_run(tmp_path / name, meta, lines, shared)
        cached[name] = _simulated_cached_tokens(load_measured_run(tmp_path / name))
    assert cached["plain"] == 0
    # Every request after the first finds the 256 shared tokens (16 blocks) cached.
    assert cached["shared"] == 3 * 256


def _four_requests_run() -> tuple[list, dict]:
    """Four 512-token prompts on an RTX 4090, a second apart: requests.jsonl lines and meta.json."""
    from kairos.bench import RequestLine

    lines = [RequestLine(f"r{i}", 512, 8, None, 10.0 + i, None, 10.1 + i, 10.2 + i) for i in range(4)]
    meta = {"schema_version": 1, "model": "llama-3.1-8b",
            "engine_kwargs": {"max_num_seqs": 8, "max_num_batched_tokens": 2048},
            "kv_cache": {"block_size": 16, "enable_prefix_caching": True},
            "hardware": {"device_name": "NVIDIA GeForce RTX 4090"}}
    return lines, meta


def _simulated_cached_tokens(run) -> int:
    from kairos.scenario.run import build_simulation, resolve_deployment
    from kairos.validate.replay import replay_scenario, replay_specs

    scenario = replay_scenario(run)
    sim = build_simulation(scenario, resolve_deployment(scenario), replay_specs(run))
    return sum(record.cached_tokens for record in sim.run().records)


def test_validation_compares_the_servers_prefix_hits_and_preemptions(tmp_path):
    """Counters `kairos bench` read from the server are set against the replay's own."""
    from kairos.bench import load_measured_run, write_measured_run
    from kairos.validate.replay import replay_scenario, validate_run
    from kairos.workload.spec import Span

    lines, meta = _four_requests_run()
    shared = {line.request_id: (Span(1, 0, 256),) for line in lines}
    write_measured_run(tmp_path / "bare", meta, lines, shared)
    run = load_measured_run(tmp_path / "bare")
    assert "server_counters" not in validate_run(run, replay_scenario(run))

    phases = {"queue_ms": 1.0, "prefill_ms": 50.0, "decode_ms": 100.0, "requests": 4, "steps": 40}
    meta["kairos_bench"] = {"server_counters": {"prefix_cache_hit_rate": 0.5, "preemptions": 2,
                                                "engine_phases": phases}}
    write_measured_run(tmp_path / "counted", meta, lines, shared)
    run = load_measured_run(tmp_path / "counted")
    counters = validate_run(run, replay_scenario(run))["server_counters"]
    # 3 of the 4 requests find their 256 of 512 prompt tokens cached: 37.5 %.
    assert counters["prefix_cache_hit_rate"] == {"measured": 0.5, "simulated": pytest.approx(0.375),
                                                 "error_points": pytest.approx(-12.5)}
    assert counters["preemptions"] == {"measured": 2, "simulated": 0}
    assert 0 < validate_run(run, replay_scenario(run))["simulated_busy_share"] < 1
    # The engine's own time per request in each phase: every finished request, one prefill step each.
    simulated = counters["engine_phases"]
    assert simulated["requests"] == {"measured": 4, "simulated": 4, "error_pct": 0.0}
    assert simulated["prefill_ms"]["simulated"] > 0 and simulated["queue_ms"]["simulated"] >= 0
    assert simulated["steps"]["simulated"] >= 4 * 8


@pytest.mark.parametrize(("bench", "blocks"), [(None, 99), ({"kairos_engine": False}, 99),
                                               ({"kairos_engine": True}, 100)])
def test_vllm_block_counts_lose_the_null_block(tmp_path, bench, blocks):
    """vLLM counts a null block among its num_gpu_blocks; kairos serve's count is all usable."""
    from kairos.bench import RequestLine, load_measured_run, write_measured_run
    from kairos.validate.replay import replay_scenario

    meta = {"schema_version": 1, "model": "llama-3.1-8b", "vllm_version": "0.19.0",
            "kv_cache": {"block_size": 16, "num_gpu_blocks": 100},
            "hardware": {"device_name": "NVIDIA GeForce RTX 4090"}}
    if bench is not None:
        meta["kairos_bench"] = bench
    write_measured_run(tmp_path, meta, [RequestLine("r0", 16, 4, None, 1.0, None, 1.1, 1.2)])
    assert replay_scenario(load_measured_run(tmp_path)).engine.num_gpu_blocks == blocks
