"""Machine speed: a run's reference-step readings against its profile's scale the twin's step times."""

from __future__ import annotations

import json

import pytest

from cli_helpers import kairos

from kairos.bench import RequestLine, write_measured_run
from kairos.bench.engine_steps import write_engine_steps
from kairos.errors import KairosError
from kairos.perf.base import BatchShape
from kairos.perf.calibrated import SCHEMA, CalibratedModel, MeasuredPoint, check_profile
from kairos.perf.machine_speed import (SPEED_KEY, at_speed, mean_reading, profile_reference, reference_time,
                                      speed_factor)

TINY_CONFIG = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512,
               "max_position_embeddings": 4096, "tie_word_embeddings": False}
COEFFICIENTS = {"step": 6e-4, "prefill_tokens": 5e-6, "decodes": 2e-5, "sampled": 1e-5, "idle_wake": 1e-3}


def profile(reference_s: float | None = 0.001) -> dict:
    data = {"schema": SCHEMA, "model": "tiny", "model_config": TINY_CONFIG, "terms": list(COEFFICIENTS),
            "coefficients": dict(COEFFICIENTS), "idle_time_constant_s": 3e-3, "request_latency_s": 0.002,
            "engine": {"block_size": 16, "num_gpu_blocks": 1024}}
    if reference_s is not None:
        data[SPEED_KEY] = {"reference_step_s": reference_s, "steps_with_reading": 1.0}
    return data


def point(time_s: float, reference_s: float) -> MeasuredPoint:
    return MeasuredPoint("served", BatchShape(num_decodes=1, decode_kv_sum=10, num_sampled=1), time_s, (time_s,),
                         0.0, reference_s)


def test_reference_time_weights_readings_by_step_time_and_skips_steps_without_one():
    points = [point(0.003, 0.002), point(0.001, 0.004), point(0.004, 0.0)]
    mean, coverage = reference_time(points)
    assert mean == pytest.approx((0.003 * 0.002 + 0.001 * 0.004) / 0.004)
    assert coverage == pytest.approx(0.5)
    assert reference_time([point(0.001, 0.0)]) == (0.0, 0.0) and reference_time([]) == (0.0, 0.0)


def test_mean_reading_counts_each_step_once_and_skips_steps_without_one():
    points = [point(0.010, 0.006), point(0.001, 0.001), point(0.001, 0.002), point(0.001, 0.0)]
    assert mean_reading(points) == pytest.approx(0.003)  # the long step's slow reading counts once
    assert mean_reading([point(0.001, 0.0)]) == 0.0


def test_speed_factor_needs_readings_on_both_sides():
    steps = [point(0.002, 0.0015)]
    assert speed_factor(profile(), steps)["factor"] == pytest.approx(1.5)
    assert speed_factor(profile(None), steps) is None
    assert speed_factor(profile(), [point(0.002, 0.0)]) is None


def test_at_speed_scales_the_host_work_only():
    base, slow = CalibratedModel(profile()), CalibratedModel(at_speed(profile(), 1.5))
    shape = BatchShape((100,), (0,), 3, 300, 4)
    host = COEFFICIENTS["step"] + 3 * COEFFICIENTS["decodes"] + 4 * COEFFICIENTS["sampled"]
    assert slow.step_time(shape) == pytest.approx(base.step_time(shape) + 0.5 * host)
    assert base.step_time(shape) == pytest.approx(host + 100 * COEFFICIENTS["prefill_tokens"])
    assert slow.idle_penalty(0.01) == pytest.approx(1.5 * base.idle_penalty(0.01))
    assert slow.request_latency_s == base.request_latency_s  # the HTTP process's, not the engine's
    assert profile_reference(slow.profile) == pytest.approx(0.0015)  # a run at that speed reads factor 1


@pytest.mark.parametrize("speed", [{"reference_step_s": 0}, {"reference_step_s": "1ms"}, {}, [0.001]])
def test_profile_with_a_bad_machine_speed_is_refused(speed):
    with pytest.raises(KairosError, match="machine_speed.reference_step_s must be a finite number > 0"):
        check_profile({**profile(), SPEED_KEY: speed})


def test_validate_scales_the_twin_to_the_runs_machine_speed(capsys, tmp_path):
    meta = {"schema_version": 1, "model": "tiny", "engine_kwargs": {"max_num_seqs": 8},
            "kv_cache": {"block_size": 16, "num_gpu_blocks": 1024}, "hardware": {"device_name": "cpu"}}
    lines = [RequestLine(f"r{i}", 100, 8, None, 10.0 + i, None, 10.01 + i, 10.03 + i) for i in range(3)]
    write_measured_run(tmp_path / "run", meta, lines)
    # Every step ran with the reference step twice as slow as at calibration.
    steps = [{"prefill_new": [100], "prefill_ctx": [0], "num_decodes": 0, "decode_kv_sum": 0, "num_sampled": 1,
              "seconds": 0.004, "idle_s": 1.0, "reference_s": 0.002},
             {"prefill_new": [], "prefill_ctx": [], "num_decodes": 1, "decode_kv_sum": 101, "num_sampled": 1,
              "seconds": 0.0015, "idle_s": 0.0, "reference_s": 0.002}]
    write_engine_steps(tmp_path / "run", steps)
    (tmp_path / "profile.json").write_text(json.dumps(profile()))
    results = {}
    for flag in ("--machine-speed", "--no-machine-speed"):
        code, out, err = kairos(capsys, "validate", "--against", str(tmp_path / "run"), "--perf",
                                f"calibrated:{tmp_path / 'profile.json'}", flag, "-o", str(tmp_path / flag))
        assert code == 0, err
        assert "reference step 2.000 ms in the run, 1.000 ms at calibration" in out
        results[flag] = json.loads((tmp_path / flag / "validation.json").read_text())
    scaled, plain = results["--machine-speed"], results["--no-machine-speed"]
    assert scaled["machine_speed"]["factor"] == pytest.approx(2.0) and scaled["machine_speed"]["applied"]
    assert not plain["machine_speed"]["applied"]
    # The decode step is host work only: twice as long. The prefill step's tokens are not.
    decode, prefill = (scaled["engine_steps"]["by_kind"][k]["predicted_s"] / plain["engine_steps"]["by_kind"][k][
        "predicted_s"] for k in ("decode", "prefill"))
    assert decode == pytest.approx(2.0) and 1.0 < prefill < 2.0
    assert scaled["metrics"]["tpot_ms"]["mean"]["simulated"] == pytest.approx(
        2 * plain["metrics"]["tpot_ms"]["mean"]["simulated"])
