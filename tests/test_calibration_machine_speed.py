"""Machine speed: a run's reference-step readings against its profile's scale the twin's step times."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from cli_helpers import kairos

from kairos.bench import RequestLine, write_measured_run
from kairos.bench.engine_steps import write_engine_steps
from kairos.calibration.machine_speed import (SPEED_KEY, AtMachineSpeed, SpeedTimeline, at_speed, mean_reading,
                                      profile_reference, reference_time, speed_factor, speed_timeline)
from kairos.calibration.model import CalibratedModel
from kairos.calibration.profile import SCHEMA, MeasuredPoint, check_profile
from kairos.engine.batch_shape import BatchShape
from kairos.errors import KairosError
from kairos.sim.executor import SimExecutor
from kairos.workload import RequestSpec

from helpers import simulate

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


def point(time_s: float, reference_s: float, start_s: float = 0.0) -> MeasuredPoint:
    return MeasuredPoint("served", BatchShape(num_decodes=1, decode_kv_sum=10, num_sampled=1), time_s, (time_s,),
                         0.0, reference_s, start_s)


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


def test_speed_timeline_places_each_reading_at_the_first_step_that_carried_it_and_interpolates():
    steps = [point(0.001, 0.003, start_s=102.0), point(0.001, 0.001, start_s=100.5), point(0.001, 0.0, start_s=101.0),
             point(0.001, 0.001, start_s=101.5),  # the same reading again: not a new one
             point(0.001, 0.002, start_s=0.0)]  # no start: left out
    timeline = speed_timeline(profile(), steps, zero_s=100.0)
    assert list(timeline.times_s) == [0.5, 2.0] and list(timeline.factors) == [1.0, 3.0]
    assert [timeline.at(t) for t in (0.0, 0.5, 1.25, 2.0, 50.0)] == [1.0, 1.0, 2.0, 3.0, 3.0]
    assert speed_timeline(profile(None), steps, 100.0) is None
    assert speed_timeline(profile(), [point(0.001, 0.002)], 100.0) is None  # a log without start times


def constant(factor: float) -> SpeedTimeline:
    return SpeedTimeline(np.array([0.0]), np.array([factor]))


def test_host_speed_at_a_constant_factor_is_at_speed():
    fixed = SimExecutor(CalibratedModel(at_speed(profile(), 1.5)))
    timed = SimExecutor(AtMachineSpeed(CalibratedModel(profile()), constant(1.5)))
    out = SimpleNamespace(shape=BatchShape((100,), (0,), 3, 300, 4))
    decode = SimpleNamespace(shape=BatchShape(num_decodes=3, decode_kv_sum=300, num_sampled=3))
    assert timed.duration(out, 7.0) == pytest.approx(fixed.duration(out, 7.0))
    assert timed.idle_penalty(0.01, 7.0) == pytest.approx(fixed.idle_penalty(0.01, 7.0))
    assert timed.decode_durations(decode, 5, 7.0) == pytest.approx(fixed.decode_durations(decode, 5, 7.0))


def test_a_speed_timeline_slows_the_steps_after_its_change_and_keeps_decode_windows_bit_identical():
    specs = [RequestSpec(f"r{i}", 0.05 * i, 200, 60) for i in range(8)]
    model = CalibratedModel(profile())
    # Three times slower from 0.2 s on, then back at 0.3 s.
    timeline = SpeedTimeline(np.array([0.0, 0.2, 0.2 + 1e-9, 0.3, 0.3 + 1e-9]), np.array([1.0, 1.0, 3.0, 3.0, 1.0]))
    fused, stepped = (simulate(specs, model=AtMachineSpeed(model, timeline), fast=fast)
                      for fast in (True, False))
    assert [(r.first_token_s, r.finish_s) for r in fused.records] == [
        (r.first_token_s, r.finish_s) for r in stepped.records]
    plain = simulate(specs, model=model).records
    for timed, base in zip(fused.records, plain):
        if base.finish_s < 0.2:  # done before the slow spell
            assert timed.finish_s == base.finish_s
        elif base.arrival_s < 0.25:  # decoding through it
            assert timed.finish_s > base.finish_s


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


def test_validate_follows_the_speed_step_by_step_where_the_steps_carry_their_start(capsys, tmp_path):
    meta = {"schema_version": 1, "model": "tiny", "engine_kwargs": {"max_num_seqs": 8},
            "kv_cache": {"block_size": 16, "num_gpu_blocks": 1024}, "hardware": {"device_name": "cpu"}}
    lines = [RequestLine(f"r{i}", 100, 8, None, 10.0 + i, None, 10.01 + i, 10.03 + i) for i in range(3)]
    write_measured_run(tmp_path / "run", meta, lines)
    # The machine ran at calibration speed for the first request, three times slower from the second on.
    steps = [{"prefill_new": [], "prefill_ctx": [], "num_decodes": 1, "decode_kv_sum": 101, "num_sampled": 1,
              "seconds": 0.002, "idle_s": 0.0, "reference_s": reference, "start_s": start}
             for start, reference in ((10.01, 0.001), (11.01, 0.003), (12.01, 0.003))]
    write_engine_steps(tmp_path / "run", steps)
    (tmp_path / "profile.json").write_text(json.dumps(profile()))
    code, out, err = kairos(capsys, "validate", "--against", str(tmp_path / "run"), "--perf",
                            f"calibrated:{tmp_path / 'profile.json'}", "-o", str(tmp_path))
    assert code == 0, err
    assert "host work scaled by the speed at each step's start: 1.000 to 3.000 (run mean 2.333)" in out
    result = json.loads((tmp_path / "validation.json").read_text())
    assert result["machine_speed"]["timeline"] == {"readings": 2, "min": 1.0, "max": 3.0}
    assert result["machine_speed"]["factor"] == pytest.approx(7 / 3)  # the run's mean, reported
    plain = CalibratedModel(profile()).step_time(BatchShape(num_decodes=1, decode_kv_sum=101, num_sampled=1))
    # Host work only: the first step as calibrated, the other two three times as long.
    assert result["engine_steps"]["predicted_s"] == pytest.approx(7 * plain)
