"""Fitting the front-end latency: the simulated TTFT of a calibration load plus the fitted
latency reproduces the measured mean, whatever the step model already explains."""

from __future__ import annotations

import numpy as np
import pytest

from test_calibration_model import profile

from kairos.errors import KairosError
from kairos.probes.latency_fit import (LOAD_FACTOR_BOUNDS, LatencySample, fit_load_factor, fit_request_latency,
                                      scaled, simulated_latencies, simulated_ttfts)

FACTS = {"model": "tiny", "max_model_len": 4096, "max_num_seqs": 64, "max_num_batched_tokens": 512,
         "block_size": 16, "num_gpu_blocks": 4096, "enable_prefix_caching": True,
         "enable_chunked_prefill": True, "policy": "fcfs"}


def poisson_load(rate: float = 10.0, n: int = 40, seed: int = 0) -> list[LatencySample]:
    arrivals = np.cumsum(np.random.default_rng(seed).exponential(1 / rate, n))
    return [LatencySample(float(t - arrivals[0]), 384, 256, 64, 0.0) for t in arrivals]


def with_ttfts(samples: list[LatencySample], ttfts: list[float]) -> list[LatencySample]:
    return [LatencySample(s.sent_s, s.prompt_len, s.shared_len, s.output_len, t) for s, t in zip(samples, ttfts)]


def test_simulated_ttfts_see_the_shared_prefix_cached():
    samples = poisson_load()
    ttfts = simulated_ttfts(profile(), FACTS, samples)
    assert len(ttfts) == len(samples) and all(t > 0 for t in ttfts)
    # The first request prefills all 384 tokens; an idle later one only its 128 unique tokens.
    unshared = simulated_ttfts(profile(), FACTS, [LatencySample(0.0, 384, 0, 64, 0.0)])[0]
    assert ttfts[0] == pytest.approx(unshared)
    assert min(ttfts[1:]) < 0.8 * ttfts[0]


@pytest.mark.parametrize("extra_s", [0.0, 0.0012, 0.005])
def test_fitted_latency_is_what_the_clients_saw_beyond_the_simulation(extra_s):
    samples = poisson_load()
    simulated = simulated_ttfts(profile(), FACTS, samples)
    measured = with_ttfts(samples, [t + extra_s + (1e-4 if i % 2 else -1e-4) for i, t in enumerate(simulated)])
    assert fit_request_latency(profile(), FACTS, measured) == pytest.approx(extra_s, abs=1e-9)


def test_latency_shifts_the_simulation_by_exactly_itself():
    # Why one replay is enough: every arrival later by L is the same timeline later by L.
    samples = poisson_load(rate=50.0)  # busy: requests batch together
    base = simulated_ttfts(profile(), FACTS, samples)
    shifted = [LatencySample(s.sent_s + 0.0037, s.prompt_len, s.shared_len, s.output_len, 0.0) for s in samples]
    assert simulated_ttfts(profile(), FACTS, shifted) == pytest.approx(base, abs=1e-12)


def test_a_load_faster_than_the_model_fits_zero_and_no_load_fits_zero():
    samples = poisson_load()
    assert fit_request_latency(profile(), FACTS, with_ttfts(samples, [1e-6] * len(samples))) == 0.0
    assert fit_request_latency(profile(), FACTS, []) == 0.0


def test_requests_the_simulated_engine_cannot_hold_are_an_error():
    with pytest.raises(KairosError, match="did not serve 1 of the 1"):
        simulated_ttfts(profile(), {**FACTS, "num_gpu_blocks": 8}, [LatencySample(0.0, 384, 0, 64, 0.0)])


@pytest.mark.parametrize("factor", [0.8, 1.0, 1.17])
def test_the_load_factor_is_the_step_speed_that_reproduces_the_measured_tpot(factor):
    samples = poisson_load(rate=20.0)  # requests decode together: TPOT depends on the batching too
    measured = [LatencySample(s.sent_s, s.prompt_len, s.shared_len, s.output_len, ttft, tpot)
                for s, (ttft, tpot) in zip(samples, simulated_latencies(scaled(profile(), factor), FACTS, samples))]
    assert all(s.tpot_s > 0 for s in measured)
    assert fit_load_factor(profile(), FACTS, measured) == pytest.approx(factor, rel=2e-3)


def test_without_measured_tpots_the_load_factor_is_one_and_out_of_bounds_it_is_the_bound():
    samples = poisson_load()
    assert fit_load_factor(profile(), FACTS, samples) == 1.0
    slow = [LatencySample(s.sent_s, s.prompt_len, s.shared_len, s.output_len, 0.0, 10.0) for s in samples]
    assert fit_load_factor(profile(), FACTS, slow) == LOAD_FACTOR_BOUNDS[1]
