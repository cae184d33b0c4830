"""Synthetic workloads: arrival processes, lengths, shared prefixes, sessions, determinism."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kairos.errors import KairosError
from kairos.workload import (
    EmpiricalLength,
    FixedLength,
    LognormalLength,
    RequestSpec,
    UniformLength,
    WorkloadConfig,
    arrival_times,
    build_workload,
    content_key,
    sample_lengths,
)

TRACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces"


def _gaps(specs: list[RequestSpec]) -> np.ndarray:
    return np.diff([spec.arrival_s for spec in specs])


def _cv(values: np.ndarray) -> float:
    return float(values.std() / values.mean())


# --- arrivals -----------------------------------------------------------------------


def test_poisson_rate_and_cv() -> None:
    specs = build_workload(WorkloadConfig(num_requests=20_000, rate=8.0, prefixes=None), seed=3)
    gaps = _gaps(specs)
    assert specs[0].arrival_s == 0.0
    assert 1 / gaps.mean() == pytest.approx(8.0, rel=0.03)
    assert _cv(gaps) == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("cv", [0.5, 1.0, 3.0])
def test_gamma_rate_and_cv(cv: float) -> None:
    times = arrival_times("gamma", 50_000, 4.0, cv, np.random.default_rng(11))
    gaps = np.diff(times)
    assert 1 / gaps.mean() == pytest.approx(4.0, rel=0.05)
    assert _cv(gaps) == pytest.approx(cv, rel=0.06)


def test_constant_and_infinite_rate() -> None:
    rng = np.random.default_rng(0)
    assert arrival_times("constant", 5, 4.0, 1.0, rng).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert arrival_times("poisson", 3, float("inf"), 1.0, rng).tolist() == [0.0, 0.0, 0.0]
    assert arrival_times("gamma", 1, 2.0, 2.0, rng).tolist() == [0.0]
    with pytest.raises(KairosError, match="unknown arrival process 'poison'"):
        arrival_times("poison", 3, 1.0, 1.0, rng)


# --- lengths ------------------------------------------------------------------------


def test_length_distributions_respect_bounds() -> None:
    rng = np.random.default_rng(5)
    assert set(sample_lengths(FixedLength(value=7), 10, rng).tolist()) == {7}
    uniform = sample_lengths(UniformLength(min=3, max=6), 2000, rng)
    assert set(uniform.tolist()) == {3, 4, 5, 6}
    wide = sample_lengths(LognormalLength(median=700, sigma=1.0), 40_000, rng)
    assert np.median(wide) == pytest.approx(700, rel=0.03)
    assert np.log(wide).std() == pytest.approx(1.0, rel=0.03)
    clipped = sample_lengths(LognormalLength(median=700, sigma=2.0, min=16, max=900), 5000, rng)
    assert clipped.min() == 16 and clipped.max() == 900
    assert clipped.dtype == np.int64


@pytest.mark.skipif(not TRACES.is_dir(), reason="shared trace data not present")
def test_empirical_lengths_come_from_the_trace() -> None:
    import csv

    path = TRACES / "azure_llm_2023_code.csv"
    with path.open() as f:
        rows = list(csv.DictReader(f))
    inputs = {int(row["ContextTokens"]) for row in rows}
    outputs = {int(row["GeneratedTokens"]) for row in rows}
    rng = np.random.default_rng(1)
    drawn_in = sample_lengths(EmpiricalLength(path=str(path)), 500, rng, "input")
    drawn_out = sample_lengths(EmpiricalLength(path=str(path), max=100), 500, rng, "output")
    assert set(drawn_in.tolist()) <= inputs
    assert set(drawn_out.tolist()) <= outputs | {100} and drawn_out.max() == 100
    cfg = WorkloadConfig(num_requests=50, input_len={"kind": "empirical", "path": str(path)})
    assert {spec.prompt_len - 256 for spec in build_workload(cfg, 0)} <= inputs


# --- shared prefixes ----------------------------------------------------------------


def test_default_workload_has_system_prompts() -> None:
    specs = build_workload(WorkloadConfig(), seed=0)
    keys = {content_key("sysprompt", i) for i in range(4)}
    assert len(specs) == 600
    assert len({spec.request_id for spec in specs}) == 600
    for spec in specs:
        (span,) = spec.shared
        assert span.key in keys and (span.start, span.length) == (0, 256)
        assert 256 + 16 <= spec.prompt_len <= 256 + 8192
        assert 4 <= spec.output_len <= 2048
    assert len({spec.shared for spec in specs}) == 4
    assert np.median([spec.prompt_len - 256 for spec in specs]) == pytest.approx(700, rel=0.15)
    assert np.median([spec.output_len for spec in specs]) == pytest.approx(200, rel=0.15)


def test_zipf_prefix_popularity() -> None:
    cfg = WorkloadConfig(num_requests=4000, prefixes={"num": 8, "length": 64, "popularity": "zipf"})
    counts = Counter(spec.shared[0].key for spec in build_workload(cfg, seed=2))
    by_rank = [counts[content_key("sysprompt", i)] for i in range(8)]
    assert by_rank == sorted(by_rank, reverse=True)
    # p(1) / p(2) = 2 with exponent 1.
    assert by_rank[0] / by_rank[1] == pytest.approx(2.0, rel=0.15)


def test_no_prefixes() -> None:
    cfg = WorkloadConfig(num_requests=20, prefixes=None, input_len=30, output_len=5)
    specs = build_workload(cfg, seed=0)
    assert all(spec.shared == () and spec.prompt_len == 30 for spec in specs)


# --- sessions -----------------------------------------------------------------------


def _check_sessions(specs: list[RequestSpec], prefix_len: int, seed: int) -> None:
    """Every invariant a multi-turn session must hold."""
    by_id = {spec.request_id: spec for spec in specs}
    assert len(by_id) == len(specs)
    sessions: dict[str, list[RequestSpec]] = {}
    for spec in specs:
        sessions.setdefault(spec.session_id, []).append(spec)
    starts = [turns[0].arrival_s for turns in sessions.values()]
    assert starts == sorted(starts) and starts[0] == 0.0
    for sid, (first, *rest) in enumerate(sessions.values()):
        assert first.after is None and first.think_s == 0.0
        stream = content_key("session", seed, sid)
        for spec in (first, *rest):
            # The session stream covers the whole prompt (past the prefix) and the answer.
            assert spec.shared_len == spec.prompt_len + spec.output_len
            assert spec.shared[-1].key == stream and spec.shared[-1].start == 0
            assert len(spec.shared) == (2 if prefix_len else 1)
            if prefix_len:  # one system prompt per session, ahead of the session stream
                assert spec.shared[0] == first.shared[0] and spec.shared[0].length == prefix_len
            assert spec.arrival_s == first.arrival_s
        for prev, turn in zip((first, *rest), rest):
            assert turn.after == prev.request_id
            assert turn.think_s >= 0.0
            assert turn.prompt_len > prev.prompt_len + prev.output_len
            # Turn n+1's prompt starts with turn n's prompt and answer.
            assert turn.shared[-1].length > prev.shared[-1].length


@pytest.mark.parametrize("prefixes", [None, {"num": 2, "length": 64}])
def test_sessions_chain_turns(prefixes) -> None:
    cfg = WorkloadConfig(
        num_requests=300,
        prefixes=prefixes,
        sessions={"turns": {"kind": "uniform", "min": 1, "max": 6}, "think_time_s": 2.0},
    )
    specs = build_workload(cfg, seed=9)
    assert len(specs) == 300
    _check_sessions(specs, 64 if prefixes else 0, seed=9)
    think = np.array([spec.think_s for spec in specs if spec.after is not None])
    assert think.mean() == pytest.approx(2.0, rel=0.2)


def test_session_turn_lengths_add_up() -> None:
    cfg = WorkloadConfig(
        num_requests=7, input_len=10, output_len=3, prefixes={"num": 1, "length": 5},
        sessions={"turns": 3, "think_time_s": 0},
    )
    specs = build_workload(cfg, seed=1)
    assert [spec.request_id for spec in specs] == [
        "syn-s0-t1", "syn-s0-t2", "syn-s0-t3", "syn-s1-t1", "syn-s1-t2", "syn-s1-t3", "syn-s2-t1"
    ]
    assert [spec.prompt_len for spec in specs[:3]] == [15, 28, 41]
    assert [spec.shared_len for spec in specs[:3]] == [18, 31, 44]
    assert {spec.think_s for spec in specs} == {0.0}
    assert specs[-1].session_id == "syn-s2"


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 60),
    turns=st.integers(1, 5),
    seed=st.integers(0, 2**32),
    prefix=st.booleans(),
    arrival=st.sampled_from(["poisson", "gamma", "constant"]),
)
def test_session_invariants_hold_for_any_config(n, turns, seed, prefix, arrival) -> None:
    cfg = WorkloadConfig(
        num_requests=n,
        arrival=arrival,
        cv=2.0,
        prefixes={"num": 3, "length": 32} if prefix else None,
        sessions={"turns": {"kind": "uniform", "min": 1, "max": turns}},
    )
    specs = build_workload(cfg, seed)
    assert len(specs) == n
    _check_sessions(specs, 32 if prefix else 0, seed)
    assert build_workload(cfg, seed) == specs


# --- determinism --------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        WorkloadConfig(),
        WorkloadConfig(arrival="gamma", cv=4, prefixes={"popularity": "zipf"}),
        WorkloadConfig(num_requests=100, sessions={}),
    ],
)
def test_same_seed_same_workload(cfg: WorkloadConfig) -> None:
    first = build_workload(cfg, seed=42)
    assert build_workload(cfg, seed=42) == first
    assert build_workload(cfg.model_copy(deep=True), seed=42) == first
    assert build_workload(cfg, seed=43) != first


def test_streams_are_independent() -> None:
    """Changing output lengths must not move arrivals or inputs (common random numbers)."""
    base = build_workload(WorkloadConfig(num_requests=50), seed=4)
    other = build_workload(WorkloadConfig(num_requests=50, output_len=17), seed=4)
    assert [(s.arrival_s, s.prompt_len, s.shared) for s in base] == [
        (s.arrival_s, s.prompt_len, s.shared) for s in other
    ]
    assert {s.output_len for s in other} == {17}


def test_negative_seed_is_an_error() -> None:
    with pytest.raises(KairosError, match="seed must be >= 0"):
        build_workload(WorkloadConfig(), seed=-1)
