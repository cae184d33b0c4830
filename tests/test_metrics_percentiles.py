"""Latency distributions match numpy; bulk ITL storage never changes the answer."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kairos.metrics import PERCENTILES, ItlCollector, stats_ms, weighted_percentiles

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
weighted_samples = st.lists(st.tuples(finite, st.integers(1, 50)), min_size=1, max_size=60)
quantiles = st.lists(st.floats(0.0, 100.0, allow_nan=False), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(weighted_samples, quantiles)
def test_weighted_percentiles_equal_numpy_on_expanded_sample(sample, qs):
    values = np.array([v for v, _ in sample])
    weights = np.array([w for _, w in sample])
    expanded = np.repeat(values, weights)
    expected = np.percentile(expanded, qs)
    assert np.array_equal(weighted_percentiles(values, weights, qs), expected)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(st.floats(0.0, 2.0), min_size=0, max_size=20), st.integers(0, 40)),
        max_size=12,
    ),
    st.lists(st.floats(0.0, 2.0), max_size=20),
)
def test_itl_collector_summary_equals_expanded_sample(chunks, singles):
    itl = ItlCollector()
    expanded: list[float] = []
    for values, count in chunks:
        itl.add_repeated(np.array(values), count)
        expanded.extend(np.repeat(values, count).tolist())
    for value in singles:
        itl.add(value)
        expanded.append(value)
    summary = itl.summary()
    assert itl.count == len(expanded)
    if not expanded:
        assert summary == {"mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0}
        return
    sample = np.array(expanded)
    for key, q in zip(("p50", "p90", "p99"), PERCENTILES, strict=True):
        assert summary[key] == float(np.percentile(sample, q)) * 1000.0
    assert np.isclose(summary["mean"], float(np.mean(sample)) * 1000.0, rtol=1e-12, atol=1e-12)


def test_itl_collector_copies_the_callers_buffer():
    itl = ItlCollector()
    buffer = np.array([0.01, 0.02])
    itl.add_repeated(buffer, 3)
    buffer[:] = 9.0
    assert itl.summary()["p99"] == float(np.percentile([0.01] * 3 + [0.02] * 3, 99)) * 1000


def test_itl_summary_is_stable_across_repeated_calls_and_later_adds():
    itl = ItlCollector()
    itl.add_repeated(np.array([0.03, 0.01]), 2)
    first = itl.summary()
    assert itl.summary() == first
    itl.add(0.05)
    sample = [0.03, 0.03, 0.01, 0.01, 0.05]
    assert itl.summary()["p50"] == float(np.percentile(sample, 50)) * 1000


def test_stats_ms_matches_numpy_and_empty_is_zero():
    values = [0.5, 0.1, 0.3, 0.2]
    stats = stats_ms(values)
    assert stats["mean"] == float(np.mean(values)) * 1000
    assert stats["p90"] == float(np.percentile(values, 90)) * 1000
    assert stats_ms([]) == {"mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0}


def test_itl_collector_merges_incrementally_without_changing_results(monkeypatch):
    monkeypatch.setattr("kairos.metrics.itl._MERGE_AT", 4)
    rng = np.random.default_rng(7)
    itl = ItlCollector()
    expanded: list[float] = []
    for _ in range(50):
        values = rng.choice([0.010, 0.012, 0.015, 0.020], size=int(rng.integers(1, 6)))
        count = int(rng.integers(1, 9))
        itl.add_repeated(values, count)
        expanded.extend(np.repeat(values, count).tolist())
        itl.add(0.011)
        expanded.append(0.011)
    summary = itl.summary()
    for key, q in zip(("p50", "p90", "p99"), PERCENTILES, strict=True):
        assert summary[key] == float(np.percentile(expanded, q)) * 1000.0
