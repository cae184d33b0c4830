"""The API front-end's time per request: the measured table, version lookup, and its place in TTFT."""

from __future__ import annotations

import json

import pytest

from kairos.errors import KairosError
from kairos.perf.front_end import load_front_end, measured_front_ends
from kairos.scenario.load import load_scenario
from kairos.scenario.run import resolve_deployment, run_scenario
from test_calibration_model import profile

LIGHT_LOAD = {"workload.num_requests": 40, "workload.rate": 0.5, "workload.input_len": 1000,
              "workload.output_len": 20}


def test_every_entry_is_measured_and_sourced():
    entries = measured_front_ends()
    assert entries
    for entry in entries:
        assert entry.request_s > 0 and entry.per_input_token_s >= 0
        assert "benchmarks/front_end_time.py" in entry.source
        assert entry.latency_s(1000) == pytest.approx(entry.request_s + 1000 * entry.per_input_token_s)


def test_versions_resolve_to_the_nearest_measured_one():
    newest = measured_front_ends()[-1]
    assert load_front_end("vllm") == (newest, None)
    assert load_front_end(f"vllm=={newest.version}") == (newest, None)
    nearest, note = load_front_end("vllm==0.1.0")
    assert nearest.engine == "vllm" and "0.1.0" in note and nearest.version in note


def test_unknown_front_ends_are_one_line_errors_and_unknown_versions_notes():
    with pytest.raises(KairosError, match="unknown front-end engine 'tgi'"):
        load_front_end("tgi")
    newest, note = load_front_end("vllm==nightly-5b8c30d")
    assert newest == measured_front_ends()[-1] and "not a release number" in note


def test_front_end_time_adds_to_ttft_at_light_load():
    plain = run_scenario(load_scenario(None, LIGHT_LOAD))
    served = run_scenario(load_scenario(None, {**LIGHT_LOAD, "engine.front_end": "vllm"}))
    front_end, _ = load_front_end("vllm")
    assert served.report["deployment"]["front_end"] == front_end.name
    assert plain.report["deployment"]["front_end"] is None
    # Requests far apart never queue: each TTFT grows by exactly its front-end time, and
    # the tokens after the first come as fast as without it.
    for alone, behind in zip(plain.records, served.records, strict=True):
        assert behind.ttft_s == pytest.approx(alone.ttft_s + front_end.latency_s(alone.input_tokens))
        assert behind.finish_s - behind.first_token_s == pytest.approx(alone.finish_s - alone.first_token_s)


def test_a_calibrated_profile_brings_its_own_front_end(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(profile(dtype_bytes=4)))
    scenario = load_scenario(None, {"model.name": "tiny", "perf.model": f"calibrated:{path}",
                                    "engine.num_gpu_blocks": 100, "engine.front_end": "vllm"})
    with pytest.raises(KairosError, match="carries the front-end time it measured"):
        resolve_deployment(scenario)
