"""engine_steps.jsonl: a run's logged engine steps, read back, checked, and predicted by `kairos validate`."""

from __future__ import annotations

import json

import pytest

from cli_helpers import kairos
from helpers import LinearModel

from kairos.bench import RequestLine, load_measured_run, write_measured_run
from kairos.bench.engine_steps import STEPS_FILE, read_engine_steps, step_point, write_engine_steps
from kairos.engine.batch_shape import BatchShape
from kairos.errors import KairosError
from kairos.validate.steps import step_time_errors

# As GET /kairos/steps answers: keys beyond the file's are dropped on writing.
LOGGED = [
    {"prefill_new": [200], "prefill_ctx": [0], "num_decodes": 0, "decode_kv_sum": 0, "num_sampled": 1,
     "seconds": 0.004, "idle_s": 1.5, "extra": "dropped"},
    {"prefill_new": [64], "prefill_ctx": [128], "num_decodes": 1, "decode_kv_sum": 201, "num_sampled": 2,
     "seconds": 0.003, "idle_s": 0.0},
    {"prefill_new": [], "prefill_ctx": [], "num_decodes": 2, "decode_kv_sum": 400, "num_sampled": 2,
     "decode_kv_max": 300, "seconds": 0.001, "idle_s": 0.0},
    {"prefill_new": [], "prefill_ctx": [], "num_decodes": 2, "decode_kv_sum": 402, "num_sampled": 2,
     "seconds": 0.001, "idle_s": 0.0, "reference_s": 0.0012},
]
META = {"schema_version": 1, "model": "llama-3.1-8b", "engine_kwargs": {"max_num_seqs": 8},
        "kv_cache": {"block_size": 16}, "hardware": {"device_name": "NVIDIA GeForce RTX 4090"}}


def test_round_trip_keeps_shapes_times_and_idle_gaps(tmp_path):
    path = write_engine_steps(tmp_path, LOGGED)
    assert path == tmp_path / STEPS_FILE and "extra" not in path.read_text()
    steps = read_engine_steps(path)
    assert [s.shape for s in steps] == [BatchShape((200,), (0,), 0, 0, 1), BatchShape((64,), (128,), 1, 201, 2),
                                        BatchShape((), (), 2, 400, 2, 300), BatchShape((), (), 2, 402, 2)]
    assert [s.time_s for s in steps] == [0.004, 0.003, 0.001, 0.001] and steps[0].idle_s == 1.5
    # A log written before decode_kv_max was logged reads as "longest not known".
    assert steps[3].shape.decode_kv_max == 0
    # The reference step's reading where the server timed it, else 0 (not measured).
    assert [s.reference_s for s in steps] == [0.0, 0.0, 0.0, 0.0012]


def test_no_steps_leaves_no_stale_file(tmp_path):
    write_engine_steps(tmp_path, LOGGED)
    assert write_engine_steps(tmp_path, []) is None and not (tmp_path / STEPS_FILE).exists()


@pytest.mark.parametrize("change, message", [
    ({"num_decodes": -1}, "'num_decodes' must be an integer >= 0"),
    ({"num_sampled": True}, "'num_sampled' must be an integer >= 0"),
    ({"prefill_new": [1, 2]}, "must have the same length"),
    ({"prefill_ctx": "0"}, "'prefill_ctx' must be a list of integers >= 0"),
    ({"seconds": 0}, "'seconds' must be a number > 0"),
    ({"idle_s": -1.0}, "'idle_s' must be a number >= 0"),
    ({"reference_s": "fast"}, "'reference_s' must be a number >= 0"),
])
def test_malformed_step_names_file_and_line(tmp_path, change, message):
    lines = [json.dumps(LOGGED[1]), json.dumps({**LOGGED[0], **change})]
    (tmp_path / STEPS_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(KairosError, match=f"{STEPS_FILE}:2: .*{message}"):
        read_engine_steps(tmp_path / STEPS_FILE)


def test_measured_run_carries_its_steps_only_when_it_has_some(tmp_path):
    lines = [RequestLine("r0", 200, 4, None, 10.0, None, 10.004, 10.006)]
    write_measured_run(tmp_path, META, lines)
    assert load_measured_run(tmp_path).steps == []
    write_engine_steps(tmp_path, LOGGED)
    assert len(load_measured_run(tmp_path).steps) == len(LOGGED)


def test_step_errors_total_and_by_kind():
    model = LinearModel(base=0.001, per_token=1e-5, per_kv=0.0)
    steps = read_engine_steps_from(LOGGED)
    result = step_time_errors(steps, model)
    assert result["steps"] == 4 and set(result["by_kind"]) == {"prefill", "mixed", "decode"}
    decode = result["by_kind"]["decode"]
    assert decode["steps"] == 2 and decode["measured_s"] == pytest.approx(0.002)
    assert decode["predicted_s"] == pytest.approx(2 * (0.001 + 2e-5))
    assert decode["error_pct"] == pytest.approx((2 * 0.00102 / 0.002 - 1) * 100)
    predicted = sum(model.step_time(s.shape) for s in steps)
    assert result["predicted_s"] == pytest.approx(predicted)
    assert result["measured_s"] == pytest.approx(0.009)


def test_idle_penalty_counts_for_steps_after_a_gap():
    class Waking(LinearModel):
        def idle_penalty(self, idle_s: float) -> float:
            return 0.002 if idle_s > 1.0 else 0.0

    steps = read_engine_steps_from(LOGGED)
    plain, waking = step_time_errors(steps, LinearModel()), step_time_errors(steps, Waking())
    assert waking["by_kind"]["prefill"]["predicted_s"] == pytest.approx(
        plain["by_kind"]["prefill"]["predicted_s"] + 0.002)
    assert waking["by_kind"]["decode"] == plain["by_kind"]["decode"]


def test_validate_reports_the_steps_of_a_run_that_has_them(capsys, tmp_path):
    lines = [RequestLine(f"r{i}", 200, 4, None, 10.0 + i, None, 10.05 + i, 10.08 + i) for i in range(3)]
    write_measured_run(tmp_path / "run", META, lines)
    write_engine_steps(tmp_path / "run", LOGGED)
    code, out, err = kairos(capsys, "validate", "--against", str(tmp_path / "run"), "-o", str(tmp_path))
    assert code == 0, err
    assert "Engine steps the server logged" in out
    result = json.loads((tmp_path / "validation.json").read_text())
    assert result["engine_steps"]["steps"] == len(LOGGED)
    assert result["engine_steps"]["measured_s"] == pytest.approx(0.009)


def read_engine_steps_from(logged):
    return [step_point(step, f"step {i}") for i, step in enumerate(logged)]
