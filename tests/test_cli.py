"""The `kairos` command: outputs, overrides, and one-line errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import kairos, one_line_error

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared data not present")


def test_simulate_default_scenario_prints_summary_and_writes_files(capsys, tmp_path):
    code, out, err = kairos(capsys, "simulate", "--num-requests", "60", "-o", str(tmp_path))
    assert code == 0, err
    assert "TTFT" in out and "Goodput" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["schema"] == "kairos.report/v1"
    assert report["summary"]["completed"] == 60
    assert report["scenario"]["model"]["name"] == "llama-3.1-8b"
    assert report["scenario"]["hardware"]["gpu"] == "h100"
    rows = (tmp_path / "requests.csv").read_text().splitlines()
    assert len(rows) == 61 and rows[0].startswith("request_id,")


def test_overrides_reach_the_scenario(capsys, tmp_path):
    code, _, err = kairos(capsys, "simulate", "--num-requests", "20", "--replicas", "2",
                          "--router", "least_kv", "--set", "engine.block_size=32",
                          "--no-prefix-caching", "-q", "-o", str(tmp_path))
    assert code == 0, err
    scenario = json.loads((tmp_path / "report.json").read_text())["scenario"]
    assert scenario["cluster"] == {"replicas": 2, "router": "least_kv", "router_options": {}, "pools": None,
                                   "migration": None, "lifecycle": [],
                                   "disaggregation": None}
    assert scenario["engine"]["block_size"] == 32
    assert scenario["engine"]["enable_prefix_caching"] is False


def test_catalog_commands(capsys):
    code, out, _ = kairos(capsys, "models")
    assert code == 0 and "llama-3.1-70b" in out and "qwen3-30b-a3b" in out
    code, out, _ = kairos(capsys, "gpus")
    assert code == 0 and "h100" in out and "rtx-4090" in out


def test_unknown_model_lists_close_matches(capsys):
    line = one_line_error(capsys, "simulate", "--model", "llama-3.1-8", "-q")
    assert "unknown model" in line and "llama-3.1-8b" in line


def test_unknown_gpu_lists_close_matches(capsys):
    line = one_line_error(capsys, "simulate", "--gpu", "h10", "-q")
    assert "unknown GPU" in line or "unknown gpu" in line
    assert "h100" in line


def test_unknown_plug_in_names_list_close_matches(capsys):
    line = one_line_error(capsys, "simulate", "--router", "least-kvv", "-q")
    assert "unknown router 'least-kvv': did you mean least_kv" in line
    line = one_line_error(capsys, "simulate", "--perf", "rooflin", "-q")
    assert "unknown step-time model 'rooflin': did you mean roofline" in line
    line = one_line_error(capsys, "simulate", "--policy", "fifo", "-q")
    assert "unknown scheduling policy 'fifo'" in line and "fcfs" in line


def test_simulate_help_is_built_from_the_registries(capsys):
    from kairos.cluster import ROUTERS
    from kairos.engine import POLICIES
    from kairos.scenario.step_models import STEP_TIME_MODELS

    code, out, _ = kairos(capsys, "simulate", "--help")
    assert code == 0
    for registry in (ROUTERS, POLICIES, STEP_TIME_MODELS):
        for name in registry.summaries():
            assert f"{name}:" in out, name
    assert "Cycle through the replicas in order." in out


def test_model_that_does_not_fit_suggests_tp(capsys):
    line = one_line_error(capsys, "simulate", "--model", "llama-3.1-70b", "-q")
    assert "GiB missing" in line and "--tp" in line


def test_invalid_yaml_names_file_and_line(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("engine:\n  max_num_seqs: [1, 2\n")
    line = one_line_error(capsys, "simulate", str(bad))
    assert str(bad) in line and "invalid YAML" in line


def test_unknown_yaml_key_is_an_error(capsys, tmp_path):
    bad = tmp_path / "typo.yaml"
    bad.write_text("engine:\n  max_num_seq: 8\n")
    line = one_line_error(capsys, "simulate", str(bad))
    assert "unknown key 'engine.max_num_seq'" in line


def test_bad_field_value_is_an_error(capsys):
    line = one_line_error(capsys, "simulate", "--set", "engine.max_num_seqs=0")
    assert "engine.max_num_seqs" in line


def test_malformed_trace_row_names_file_and_line(capsys, tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                     "2023-11-16 18:15:46.6805900,374,44\n"
                     "2023-11-16 18:15:47.0000000,abc,10\n")
    line = one_line_error(capsys, "simulate", "--workload", f"trace:{trace}")
    assert f"{trace}:3" in line


def test_missing_trace_file(capsys, tmp_path):
    line = one_line_error(capsys, "simulate", "--workload", f"trace:{tmp_path}/nope.csv")
    assert "nope.csv" in line


def test_rate_with_trace_is_rejected(capsys, tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n")
    line = one_line_error(capsys, "simulate", "--workload", f"trace:{trace}", "--rate", "3")
    assert "--time-scale" in line


@needs_data
def test_trace_replay_completes_every_request(capsys, tmp_path):
    trace = DATA / "traces" / "azure_llm_2023_code.csv"
    code, _, err = kairos(capsys, "simulate", "--workload", f"trace:{trace}", "--num-requests",
                          "500", "-q", "-o", str(tmp_path))
    assert code == 0, err
    summary = json.loads((tmp_path / "report.json").read_text())["summary"]
    assert summary["num_requests"] == summary["completed"] == 500


def test_readme_scenario_example_is_valid(tmp_path):
    import re

    from kairos.scenario.load import load_scenario

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = re.findall(r"```yaml\n(.*?)```", readme, re.S)[0]
    path = tmp_path / "example.yaml"
    path.write_text(example)
    assert load_scenario(path).model_dump() == load_scenario(None).model_dump()


def test_explain_shows_sampled_steps_by_operator(capsys, tmp_path):
    code, out, err = kairos(capsys, "simulate", "--num-requests", "80", "--explain", "-o", str(tmp_path))
    assert code == 0, err
    assert "Sampled steps" in out and "host" in out
    rows = json.loads((tmp_path / "report.json").read_text())["explain"]
    assert 1 <= len(rows) <= 16
    for row in rows:
        assert abs(sum(row["operators_ms"].values()) - row["total_ms"]) < 1e-6 * row["total_ms"] + 1e-6
        assert row["prefill_tokens"] + row["decodes"] > 0


def test_perf_auto_falls_back_to_roofline_off_the_kernel_database(capsys, tmp_path):
    code, out, err = kairos(capsys, "simulate", "--num-requests", "20", "--gpu", "rtx-4090", "--perf", "auto",
                            "-o", str(tmp_path))
    assert code == 0, err
    assert json.loads((tmp_path / "report.json").read_text())["deployment"]["perf"] == "roofline"


def test_bad_option_value_is_a_usage_error_not_a_crash(capsys):
    code, _, err = kairos(capsys, "simulate", "--rate", "fast")
    assert code == 2 and "Invalid value for '--rate'" in err and "Traceback" not in err


def test_error_text_with_brackets_is_printed_verbatim(capsys):
    # Rich would read "[bar]" as a style tag and drop it; messages are printed literally.
    assert "foo[bar]" in one_line_error(capsys, "simulate", "--model", "foo[bar]", "-q")
