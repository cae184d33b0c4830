"""Benchmark prompts: exact lengths, ids in range, deterministic, shared where specs share."""

from __future__ import annotations

import pytest

from kairos.bench import PromptBuilder
from kairos.bench.prompts import WORDS
from kairos.errors import KairosError
from kairos.workload import RequestSpec, Span, WorkloadConfig, build_workload


def test_prompts_have_exact_lengths_and_ids_in_range():
    builder = PromptBuilder(vocab_size=32000, seed=3)
    for length in (1, 7, 300, 5000):
        ids = builder.prompt(RequestSpec(f"r{length}", 0.0, length, 4))
        assert len(ids) == length
        assert all(isinstance(t, int) and 1000 <= t < 32000 for t in ids)
    small = PromptBuilder(vocab_size=64).token_ids(RequestSpec("r", 0.0, 2000, 1))
    assert min(small) >= 2 and max(small) < 64 and len(set(small)) > 50


def test_prompts_are_deterministic_per_seed_and_request():
    spec = RequestSpec("r0", 0.0, 100, 4)
    assert PromptBuilder(seed=1).token_ids(spec) == PromptBuilder(seed=1).token_ids(spec)
    assert PromptBuilder(seed=1).token_ids(spec) != PromptBuilder(seed=2).token_ids(spec)
    other = RequestSpec("r1", 0.0, 100, 4)
    assert PromptBuilder(seed=1).token_ids(spec) != PromptBuilder(seed=1).token_ids(other)


def test_shared_spans_give_shared_tokens():
    builder = PromptBuilder(seed=0)
    system = Span(key=42, start=0, length=64)
    a = builder.token_ids(RequestSpec("a", 0.0, 100, 4, shared=(system,)))
    b = builder.token_ids(RequestSpec("b", 0.0, 90, 4, shared=(system,)))
    assert a[:64] == b[:64] and a[64:90] != b[64:90]
    # A session turn's span runs into its answer; the next turn's prompt covers it, so
    # the earlier prompt is a prefix of the later one.
    turn1 = builder.token_ids(RequestSpec("t1", 0.0, 30, 10, shared=(Span(7, 0, 40),)))
    turn2 = builder.token_ids(RequestSpec("t2", 0.0, 60, 10, shared=(Span(7, 0, 70),)))
    assert turn2[:30] == turn1 and len(turn2) == 60


def test_synthetic_system_prompts_are_really_shared():
    specs = build_workload(WorkloadConfig(num_requests=40, input_len=20, output_len=5), seed=0)
    builder = PromptBuilder(seed=0)
    heads: dict[int, list[int]] = {}
    for spec in specs:
        ids = builder.token_ids(spec)
        heads.setdefault(spec.shared[0].key, ids[:256])
        assert ids[:256] == heads[spec.shared[0].key]
    assert len(heads) == 4


def test_given_token_ids_and_text_prompts():
    builder = PromptBuilder(seed=0)
    assert builder.prompt(RequestSpec("r", 0.0, 3, 1, prompt_token_ids=(5, 6, 7))) == [5, 6, 7]
    text = PromptBuilder("text", seed=0)
    system = (Span(9, 0, 20),)
    a = text.prompt(RequestSpec("a", 0.0, 50, 1, shared=system))
    b = text.prompt(RequestSpec("b", 0.0, 50, 1, shared=system))
    assert isinstance(a, str) and len(a.split()) == 50 and set(a.split()) <= set(WORDS)
    assert a.split()[:20] == b.split()[:20] and a != b


def test_bad_settings_are_errors():
    with pytest.raises(KairosError, match="vocab size must be >= 64"):
        PromptBuilder(vocab_size=10)
    with pytest.raises(KairosError, match="prompt format must be one of token-ids, text"):
        PromptBuilder("words")  # type: ignore[arg-type]
