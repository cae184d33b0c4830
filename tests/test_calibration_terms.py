"""Attention terms: padded (our engine's SDPA) and varlen (kernels that compute exactly the work),
chosen by a profile's engine.attention, in the fit, the model and the simulator."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kairos.calibration.fit import fit_step_time
from kairos.calibration.model import CalibratedModel
from kairos.calibration.profile import MeasuredPoint
from kairos.calibration.terms import PADDED, TERMS, VARLEN, AttentionLayout, term_values
from kairos.engine.batch_shape import BatchShape
from kairos.workload.spec import RequestSpec

from helpers import simulate
from test_calibration_model import TRUE, assert_window_is_single_steps, grid_shapes, profile

VARLEN_LAYOUT = AttentionLayout(kind=VARLEN)


def test_varlen_prefill_slots_are_each_chunks_context_and_causal_triangle():
    shape = BatchShape((64, 3, 1), (512, 0, 100), 2, 700, 5, 600)
    expected = (64 * 512 + 64 * 65 // 2) + (3 * 0 + 3 * 4 // 2) + (1 * 100 + 1)
    assert VARLEN_LAYOUT.prefill_slots(shape) == expected
    # Padded pays for the longest chunk and context, in whole blocks, and skips one-token chunks.
    assert AttentionLayout(16).prefill_slots(shape) > expected


def test_varlen_decode_slots_are_the_summed_kv_lengths_even_where_the_longest_is_known():
    shape = BatchShape(num_decodes=2, decode_kv_sum=1000, num_sampled=2, decode_kv_max=900)
    assert VARLEN_LAYOUT.decode_slots(shape) == 1000
    assert AttentionLayout().decode_slots(shape) == 1800  # padded to the longest
    values = term_values(shape, layout=VARLEN_LAYOUT)
    assert values[TERMS.index("decode_attention_slots")] == 1000.0


def test_of_engine_reads_the_attention_kind_padded_when_absent():
    assert AttentionLayout.of_engine({"block_size": 16}) == AttentionLayout(16, None, PADDED)
    assert AttentionLayout.of_engine({"attention": "varlen", "block_size": 16}).kind == VARLEN
    assert CalibratedModel(profile(engine={"attention": "varlen"})).layout.kind == VARLEN
    assert CalibratedModel(profile()).layout.kind == PADDED


def test_a_varlen_profile_prices_unequal_decodes_by_their_summed_lengths():
    model = CalibratedModel(profile(engine={"attention": "varlen"}))
    equal = model.step_time(BatchShape(num_decodes=2, decode_kv_sum=1000, num_sampled=2, decode_kv_max=500))
    unequal = model.step_time(BatchShape(num_decodes=2, decode_kv_sum=1000, num_sampled=2, decode_kv_max=900))
    assert unequal == equal


coefficients = st.floats(min_value=0.0, max_value=1e-2, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({term: coefficients for term in TERMS}),
       st.integers(1, 512), st.integers(0, 10**6), st.integers(1, 64), st.booleans())
def test_varlen_decode_window_is_bit_identical_to_single_steps(coef, n, kv, steps, longest_known):
    assert_window_is_single_steps(CalibratedModel(profile(coef, engine={"attention": "varlen"})), n, kv, steps,
                                  longest_known)


def test_fit_on_varlen_terms_recovers_known_coefficients():
    truth = CalibratedModel(profile(engine={"attention": "varlen"}))
    points = [MeasuredPoint("step", shape, truth.step_time(shape), (truth.step_time(shape),))
              for shape in grid_shapes()]
    fit = fit_step_time(points, layout=truth.layout)
    for term in TERMS:
        if term != "idle_wake":
            assert fit.coefficients[term] == pytest.approx(TRUE[term], rel=1e-6), term


def test_the_simulator_runs_a_varlen_profile_on_varlen_terms_and_fused_windows_match_stepping():
    specs = [RequestSpec(f"r{i}", 0.01 * i, 100 + 300 * (i % 3), 40) for i in range(6)]
    varlen = CalibratedModel(profile(engine={"attention": "varlen", "block_size": 16}))
    padded = CalibratedModel(profile(engine={"block_size": 16}))
    fused, stepped = (simulate(specs, model=varlen, fast=fast).records for fast in (True, False))
    assert [(r.first_token_s, r.finish_s) for r in fused] == [(r.first_token_s, r.finish_s) for r in stepped]
    # Decodes of unequal contexts pay for the longest only when padded.
    assert sum(r.finish_s for r in fused) < sum(r.finish_s for r in simulate(specs, model=padded).records)
