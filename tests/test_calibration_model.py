"""Calibrated step-time model: the fit recovers known coefficients, decode windows are bit-identical,
bad profiles fail with one clear line, and the registry builds it without engine overheads."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kairos.calibration.fit import fit_step_time, nnls
from kairos.calibration.model import CalibratedModel
from kairos.calibration.profile import SCHEMA, MeasuredPoint, load_profile
from kairos.calibration.terms import TERMS, term_values
from kairos.engine.batch_shape import BatchShape
from kairos.errors import KairosError
from kairos.hardware import load_gpu
from kairos.models.arch import ModelArch
from kairos.perf.overheads import WithOverheads
from kairos.scenario.step_models import make_step_time_model
from kairos.workload.spec import RequestSpec

from helpers import simulate

# The `tiny` serve preset's shape, as `kairos calibrate` writes it.
TINY_CONFIG = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512,
               "max_position_embeddings": 4096, "tie_word_embeddings": False}
TRUE = {"step": 6e-4, "prefill_tokens": 5e-6, "prefill_attention_slots": 1.5e-8, "prefill_chunks": 1e-4,
        "decodes": 2e-5, "decode_attention_slots": 8e-8, "sampled": 1e-5, "mixed": 1e-3, "idle_wake": 1.1e-3}
TRUE_TIME_CONSTANT_S = 3e-3


def profile(coefficients=TRUE, **extra) -> dict:
    data = {"schema": SCHEMA, "model": "tiny", "model_config": TINY_CONFIG, "terms": list(coefficients),
            "coefficients": dict(coefficients), "idle_time_constant_s": TRUE_TIME_CONSTANT_S}
    data.update(extra)
    return data


def grid_shapes() -> list[BatchShape]:
    """Shapes like the calibration grid's: prefill chunks over prefixes, decodes, mixed steps."""
    shapes = []
    for prefix in (0, 512, 2048):
        shapes += [BatchShape((c,), (prefix,), num_sampled=1) for c in (16, 64, 256, 1024, 2048)]
        shapes.append(BatchShape((2048,), (prefix,), num_sampled=0))
    shapes += [BatchShape((c,) * k, (0,) * k, num_sampled=k) for k, c in ((2, 64), (8, 32), (4, 256))]
    for ctx in (16, 1024):
        shapes += [BatchShape(num_decodes=n, decode_kv_sum=n * (ctx + 1), num_sampled=n) for n in (1, 8, 64, 256)]
    for n in (8, 64):
        shapes += [BatchShape((c,), (p,), n, n * 257, n + 1) for c in (64, 512) for p in (0, 1024)]
        shapes.append(BatchShape((2048 - n,), (0,), n, n * 257, n))
    return shapes


def points_from(model: CalibratedModel, noise: float = 0.0, seed: int = 0) -> list[MeasuredPoint]:
    """Every grid shape in a busy spell and after idle gaps of 1 ms to 1 s."""
    rng = np.random.default_rng(seed)
    points = []
    for shape in grid_shapes():
        for idle_s in (0.0, 1e-3, 4e-3, 1.0):
            t = (model.step_time(shape) + model.idle_penalty(idle_s)) * (1 + noise * rng.standard_normal())
            points.append(MeasuredPoint("decode" if not shape.prefill_new else "prefill", shape, t, (t,), idle_s))
    return points


@pytest.mark.parametrize("weight_power", [1.0, 0.5, 0.0])
def test_fit_recovers_known_coefficients(weight_power):
    fit = fit_step_time(points_from(CalibratedModel(profile())), weight_power=weight_power)
    for term in TERMS:
        assert fit.coefficients[term] == pytest.approx(TRUE[term], rel=1e-6), term
    assert fit.idle_time_constant_s == TRUE_TIME_CONSTANT_S
    assert fit.median_abs_error_pct < 1e-6 and fit.heldout_p90_abs_error_pct < 1e-6


def test_points_without_idle_gaps_fit_no_idle_penalty():
    busy = [p for p in points_from(CalibratedModel(profile())) if p.idle_s == 0]
    fit = fit_step_time(busy)
    assert fit.coefficients["idle_wake"] == 0 and fit.idle_time_constant_s == 0
    assert fit.coefficients["step"] == pytest.approx(TRUE["step"], rel=1e-6)


def test_idle_penalty_grows_with_the_gap_and_saturates():
    model = CalibratedModel(profile())
    penalties = [model.idle_penalty(s) for s in (0.0, 1e-3, 3e-3, 1e-2, 1.0, math.inf)]
    assert penalties[0] == 0 and penalties == sorted(penalties)
    assert penalties[2] == pytest.approx(TRUE["idle_wake"] * (1 - math.exp(-1)))
    assert penalties[-1] == TRUE["idle_wake"]


def test_fit_keeps_coefficients_non_negative_and_close_under_noise():
    # A term the data do not need (no sampling cost) must come out zero, not negative.
    truth = dict(TRUE, sampled=0.0)
    fit = fit_step_time(points_from(CalibratedModel(profile(truth)), noise=0.02, seed=3))
    assert all(c >= 0 for c in fit.coefficients.values())
    for term in ("step", "prefill_tokens", "prefill_attention_slots", "decode_attention_slots"):
        assert fit.coefficients[term] == pytest.approx(truth[term], rel=0.2), term
    assert fit.median_abs_error_pct < 3


def test_fit_lands_on_each_shapes_mean_time_whatever_the_weight_power():
    # A pause that slows one step of a shape must count as much as a quick step of it: weighted by
    # their own measured times, the slow step would count less and the fit land under the mean.
    shape = BatchShape(num_decodes=1, decode_kv_sum=10, num_sampled=1)
    times = [1e-3] * 10 + [10e-3]
    points = [MeasuredPoint("decode", shape, t, (t,)) for t in times]
    for power in (0.0, 0.5, 1.0):
        coefficients = fit_step_time(points, weight_power=power).coefficients
        assert CalibratedModel(profile(coefficients)).step_time(shape) == pytest.approx(sum(times) / len(times))


def test_weight_power_sets_which_steps_the_fit_favours():
    # Step times that no line through the decode count fits (1, 2 and 10 ms for 1, 2 and 3 decodes):
    # relative error (1) favours the short steps, absolute error (0) the long one.
    shapes = [BatchShape(num_decodes=n, decode_kv_sum=10 * n, num_sampled=n) for n in (1, 2, 3)]
    points = [MeasuredPoint("decode", shape, t, (t,)) for shape, t in zip(shapes, (1e-3, 2e-3, 10e-3))] * 3

    def relative_errors(power: float) -> list[float]:
        model = CalibratedModel(profile(fit_step_time(points, weight_power=power).coefficients))
        return [abs(model.step_time(p.shape) / p.time_s - 1) for p in points]

    relative, absolute = relative_errors(1.0), relative_errors(0.0)
    assert relative[0] < absolute[0]
    assert absolute[2] < relative[2]


def test_fit_needs_enough_points():
    with pytest.raises(KairosError, match="at least"):
        fit_step_time(points_from(CalibratedModel(profile()))[:3])


def test_nnls_meets_the_optimality_conditions():
    rng = np.random.default_rng(7)
    for _ in range(50):
        a = rng.normal(size=(30, 6)) * rng.choice([1e-3, 1.0, 1e3], size=6)
        b = rng.normal(size=30)
        x = nnls(a, b)
        gradient = a.T @ (b - a @ x)
        scale = np.abs(a).sum(axis=0) * np.abs(b).sum() * 1e-9
        assert (x >= 0).all()
        # KKT: no ascent direction into the feasible set; zero gradient where x is free.
        assert (gradient <= scale).all()
        assert np.all(np.abs(gradient[x > 0]) <= scale[x > 0])


coefficients = st.floats(min_value=0.0, max_value=1e-2, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({term: coefficients for term in TERMS}),
       st.integers(1, 512), st.integers(0, 10**6), st.integers(1, 64), st.booleans())
def test_decode_window_is_bit_identical_to_single_steps(coef, n, kv, steps, longest_known):
    assert_window_is_single_steps(CalibratedModel(profile(coef)), n, kv, steps, longest_known)


def assert_window_is_single_steps(model: CalibratedModel, n: int, kv: int, steps: int, longest_known: bool) -> None:
    kv += n  # every decode attends to at least its own token
    longest = -(-kv // n) + 7 if longest_known else 0
    window = model.decode_window(n, kv, steps, longest)
    singles = [model.step_time(BatchShape(num_decodes=n, decode_kv_sum=kv + i * n, num_sampled=n,
                                          decode_kv_max=longest + i if longest else 0))
               for i in range(steps)]
    assert window.tolist() == singles
    assert window[0] == model.decode_window(n, kv, 1, longest)[0]


def test_decodes_of_unequal_length_pay_for_the_longest():
    """The executor pads a step's decodes to the longest: 100 + 900 tokens cost as much as 900 + 900."""
    model = CalibratedModel(profile())
    equal = model.step_time(BatchShape(num_decodes=2, decode_kv_sum=1000, num_sampled=2, decode_kv_max=500))
    unequal = model.step_time(BatchShape(num_decodes=2, decode_kv_sum=1000, num_sampled=2, decode_kv_max=900))
    padded = model.step_time(BatchShape(num_decodes=2, decode_kv_sum=1800, num_sampled=2, decode_kv_max=900))
    assert unequal == pytest.approx(equal + 2 * 400 * TRUE["decode_attention_slots"])
    assert unequal == padded


def test_breakdown_sums_to_step_time_and_names_every_term():
    model = CalibratedModel(profile())
    for shape in grid_shapes():
        parts = model.breakdown(shape)
        assert list(parts) == list(TERMS)
        assert sum(parts.values()) == pytest.approx(model.step_time(shape), rel=1e-12)
        assert parts["step"] == TRUE["step"]


def test_terms_a_profile_omits_count_zero():
    model = CalibratedModel(profile({"step": 1e-3, "decodes": 1e-4}))
    assert model.step_time(BatchShape((100,), (0,), 4, 400, 5)) == pytest.approx(1e-3 + 4e-4)


def test_points_round_trip_through_json():
    point = MeasuredPoint("mixed", BatchShape((64,), (512,), 8, 2072, 9), 0.003, (0.0031, 0.003, 0.0029))
    assert MeasuredPoint.from_dict(json.loads(json.dumps(point.to_dict()))) == point
    assert term_values(point.shape) == (1.0, 64.0, 64 * 576.0, 1.0, 8.0, 2072.0, 9.0, 1.0, 0.0)
    idle = MeasuredPoint("decode", BatchShape(num_decodes=1, decode_kv_sum=17, num_sampled=1), 0.002, (0.002,), 0.25)
    assert MeasuredPoint.from_dict(json.loads(json.dumps(idle.to_dict()))) == idle


@pytest.mark.parametrize("content, message", [
    (None, "no such calibration profile"),
    ("{not json", "cannot read calibration profile"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({"schema": "kairos.report/v1"}), "schema is 'kairos.report/v1'"),
    (json.dumps({k: v for k, v in profile().items() if k != "model_config"}), "'model_config' is missing"),
    (json.dumps(profile(dict(TRUE, warp_drive=1.0))), "unknown term 'warp_drive'"),
    (json.dumps(profile(dict(TRUE, decodes=-1e-5))), "coefficient of 'decodes'"),
    (json.dumps(profile(dict(TRUE, step="fast"))), "coefficient of 'step'"),
    (json.dumps(profile(idle_time_constant_s=-1.0)), "'idle_time_constant_s' must be"),
    (json.dumps(profile(dict(TRUE, prefill_self_pairs=1e-8))), "older `kairos calibrate`.*calibrate again"),
    (json.dumps(profile(engine={"block_size": 0})), "engine.block_size must be an integer >= 1"),
    (json.dumps(profile(engine={"attention_min_split_slots": "x"})), "engine.attention_min_split_slots"),
])
def test_malformed_profiles_fail_with_the_file_named(tmp_path, content, message):
    path = tmp_path / "profile.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(KairosError, match=message) as info:
        load_profile(path)
    assert str(info.value).startswith(str(path))
    with pytest.raises(KairosError, match=message):
        CalibratedModel(path)


@pytest.fixture
def profile_path(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(profile(dtype_bytes=4)))
    return path


def tiny_arch() -> ModelArch:
    return ModelArch.from_hf_config(TINY_CONFIG, name="tiny-config")


def test_registry_builds_calibrated_without_overheads(profile_path):
    resolved = make_step_time_model(f"calibrated:{profile_path}", tiny_arch(), load_gpu("h100"), 1)
    assert resolved.used == "calibrated" and resolved.model.name == "calibrated"
    assert isinstance(resolved.model, CalibratedModel) and not isinstance(resolved.model, WithOverheads)
    shape = BatchShape((128,), (0,), 4, 400, 5)
    assert resolved.model.step_time(shape) == CalibratedModel(profile_path).step_time(shape)
    assert CalibratedModel(profile_path).arch().dtype_bytes == 4


@pytest.mark.parametrize("name, kwargs, message", [
    ("calibrated", {}, "needs a profile"),
    ("calibrated:", {}, "needs a profile"),
    ("calibrated:{path}", {"overheads": {"decode_step_s": 0.001}}, "do not apply"),
    ("calibrated:{path}", {"tp": 2}, "one device"),
    ("calibrated:{path}", {"model": "other"}, "measured on model 'tiny'"),
    ("calibrated:{path}.missing", {}, "no such calibration profile"),
])
def test_registry_rejects_calibrated_misuse(profile_path, name, kwargs, message):
    model = tiny_arch()
    if kwargs.pop("model", None):
        model = ModelArch.from_hf_config(dict(TINY_CONFIG, hidden_size=128), name="other")
    tp = kwargs.pop("tp", 1)
    with pytest.raises(KairosError, match=message):
        make_step_time_model(name.format(path=profile_path), model, load_gpu("h100"), tp, **kwargs)


def test_simulation_adds_the_idle_penalty_to_the_first_step_after_a_gap_only():

    cold = CalibratedModel(profile())
    warm = CalibratedModel(profile(dict(TRUE, idle_wake=0.0)))
    # a and b arrive together at an idle engine; c arrives 2 ms after they finish.
    specs = [RequestSpec("a", 0.0, 64, 8), RequestSpec("b", 0.0, 64, 8)]

    def run(model, extra=()):
        return {r.request_id: r for r in simulate(specs + list(extra), model=model).records}

    first = run(cold)
    end = max(r.finish_s for r in first.values())
    gap = 2e-3
    extra = [RequestSpec("c", end + gap, 64, 64)]
    with_gap, without = run(cold, extra), run(warm, extra)
    full = TRUE["idle_wake"]
    for rid in ("a", "b"):  # one step serves both: the penalty counts once
        assert with_gap[rid].ttft_s == pytest.approx(without[rid].ttft_s + full, rel=1e-9)
    # c's first step starts after a 2 ms gap, partly cold; its decodes run in a busy spell
    shift = cold.idle_penalty(gap)
    assert 0 < shift < full
    assert with_gap["c"].ttft_s == pytest.approx(without["c"].ttft_s + shift, rel=1e-9)
    assert with_gap["c"].e2e_s == pytest.approx(without["c"].e2e_s + shift, rel=1e-9)


def test_unequal_prefill_chunks_pay_for_the_longest_in_their_attention_batch():
    model = CalibratedModel(profile({"prefill_attention_slots": 1e-8}, engine={"block_size": 16}))
    # One chunk: 100 queries x 112 key slots (100 + 0 rounded up to whole 16-token blocks).
    assert model.step_time(BatchShape((100,), (0,), num_sampled=1)) == pytest.approx(100 * 112 * 1e-8)
    # 100 + 4 tokens over contexts 0 and 500: both padded to 100 queries x 512 slots.
    assert model.step_time(BatchShape((100, 4), (0, 500), num_sampled=2)) == pytest.approx(2 * 100 * 512 * 1e-8)
    # With a split threshold the executor cuts them apart, and so does the model.
    split = CalibratedModel(profile({"prefill_attention_slots": 1e-8},
                                    engine={"block_size": 16, "attention_min_split_slots": 64}))
    assert split.step_time(BatchShape((100, 4), (0, 500), num_sampled=2)) == pytest.approx(
        (100 * 112 + 4 * 512) * 1e-8)


def test_front_end_latency_is_per_request_and_per_prompt_token():
    assert CalibratedModel(profile()).front_end_latency() is None
    latency = CalibratedModel(profile(request_latency_s=0.004, request_latency_per_input_token_s=2e-6))
    front_end = latency.front_end_latency()
    assert front_end is not None
    assert front_end(0) == pytest.approx(0.004) and front_end(1000) == pytest.approx(0.006)
