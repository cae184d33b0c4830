"""Output-length predictors: what each predicts, how the histogram learns, and the error the report shows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kairos.engine import SchedulerConfig
from kairos.errors import KairosError
from kairos.predict import PREDICTORS, PredictionErrors, make_predictor
from kairos.workload.spec import RequestSpec

from helpers import simulate


def spec(i: int, prompt: int = 100, output: int = 50) -> RequestSpec:
    return RequestSpec(f"r{i}", 0.0, prompt, output)


def test_the_oracle_knows_and_a_request_still_running_produces_one_more():
    oracle = make_predictor("oracle")
    assert oracle.predict(spec(0, output=50)) == 50
    assert oracle.predict(spec(0, output=50), generated=70) == 71


def test_the_noisy_oracle_is_fixed_per_request_and_its_error_grows_with_sigma():
    specs = [spec(i, output=200) for i in range(2000)]
    exact = make_predictor("noisy", sigma=0.0)
    assert all(exact.predict(s) == 200 for s in specs[:50])
    errors = []
    for sigma in (0.25, 0.5, 1.0):
        noisy = make_predictor("noisy", sigma=sigma, seed=3)
        predictions = np.array([noisy.predict(s) for s in specs])
        assert [noisy.predict(s) for s in specs[:20]] == list(predictions[:20])  # deterministic
        # log(prediction / truth) is normal with the stated sigma.
        assert np.std(np.log(predictions / 200)) == pytest.approx(sigma, rel=0.1)
        errors.append(np.mean(np.abs(predictions - 200)))
    assert errors == sorted(errors)
    seeded = [[make_predictor("noisy", sigma=0.5, seed=seed).predict(s) for s in specs[:20]] for seed in (3, 4)]
    assert seeded[0] != seeded[1]


def test_the_histogram_predicts_the_prior_then_what_it_saw_for_prompts_like_this_one():
    hist = make_predictor("histogram", prior=77, min_samples=5)
    assert hist.predict(spec(0, prompt=100)) == 77
    for i in range(20):
        hist.observe(spec(i, prompt=100), 40)        # short prompts: 40-token answers
        hist.observe(spec(i, prompt=5000), 1000)     # long prompts: 1000-token answers
    short, long = hist.predict(spec(0, prompt=120)), hist.predict(spec(0, prompt=6000))
    assert 32 <= short < 64 and 512 <= long < 2048  # the bin of what it saw
    # A request past its prediction is predicted from the longer lengths seen (the conditional).
    assert hist.predict(spec(0, prompt=120), generated=100) > 100
    # An unseen bucket borrows every prompt's history: half 40s, half 1000s, so the median bin is one of them.
    assert hist.predict(spec(0, prompt=2)) in (short, long)


def test_the_constant_predictor_reserves_its_limit():
    assert make_predictor("constant", tokens=300).predict(spec(0)) == 300


def test_unknown_predictors_and_bad_knobs_are_one_line_errors():
    with pytest.raises(KairosError, match="unknown output-length predictor"):
        make_predictor("crystal_ball")
    with pytest.raises(KairosError, match="has no knob"):
        make_predictor("oracle", sigma=1)
    with pytest.raises(KairosError, match="sigma"):
        make_predictor("noisy", sigma=-1)
    assert set(PREDICTORS.names()) == {"oracle", "noisy", "histogram", "constant"}


def test_prediction_errors_summarise_mae_mape_and_bias():
    errors = PredictionErrors()
    errors.add(120, 100)
    errors.add(50, 100)
    assert errors.summary() == {"requests": 2, "mae_tokens": 35.0, "mape_pct": 35.0, "bias_tokens": -15.0}
    assert PredictionErrors().summary()["mae_tokens"] is None


def test_a_simulation_reports_the_error_of_the_predictions_made_on_arrival():
    specs = [RequestSpec(f"r{i}", 0.05 * i, 64, 10 + 7 * (i % 9)) for i in range(80)]
    cfg = SchedulerConfig(policy="sjf")
    exact = simulate(specs, config=cfg, predictor=("oracle", {}))
    assert exact.prediction == {"requests": 80, "mae_tokens": 0.0, "mape_pct": 0.0, "bias_tokens": 0.0}
    noisy = simulate(specs, config=cfg, predictor=("noisy", {"sigma": 1.0}))
    assert noisy.prediction["requests"] == 80 and noisy.prediction["mae_tokens"] > 5
    assert simulate(specs).prediction is None
    assert math.isfinite(noisy.prediction["mape_pct"])
