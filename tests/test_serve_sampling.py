"""Sampling: greedy is argmax, filters bound the support, draws follow the distribution, seeds are per request."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from kairos.serve import EngineRunner, RunnerConfig, SamplingParams, load_model  # noqa: E402
from kairos.serve.sampler import Sampler  # noqa: E402

CPU = torch.device("cpu")




def sampler_with(params: list[SamplingParams]) -> Sampler:
    s = Sampler(CPU, seed=0)
    for uid, p in enumerate(params):
        s.add(uid, p)
    return s


def test_greedy_rows_are_argmax_even_next_to_sampled_rows():
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(0))
    params = [SamplingParams(), SamplingParams(temperature=1.0, seed=1)] * 3
    tokens = sampler_with(params).sample(logits, list(range(6)))
    argmax = logits.argmax(-1).tolist()
    assert [tokens[i] for i in (0, 2, 4)] == [argmax[i] for i in (0, 2, 4)]


def test_top_k_one_is_greedy():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(1))
    params = [SamplingParams(temperature=2.0, top_k=1, seed=i) for i in range(4)]
    assert sampler_with(params).sample(logits, [0, 1, 2, 3]) == logits.argmax(-1).tolist()


def test_top_k_and_top_p_bound_the_support():
    n = 2000
    # Probabilities 0.5, 0.3, 0.15, 0.05 for tokens 0..3, everything else impossible.
    row = torch.full((20,), float("-inf"))
    row[:4] = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    logits = row.repeat(n, 1)
    cases = {SamplingParams(temperature=1.0, top_k=3): {0, 1, 2},
             SamplingParams(temperature=1.0, top_p=0.7): {0, 1},
             SamplingParams(temperature=1.0, top_p=0.81): {0, 1, 2},
             SamplingParams(temperature=1.0, top_k=3, top_p=0.9): {0, 1, 2}}
    for params, support in cases.items():
        s = Sampler(CPU, seed=7)
        for uid in range(n):
            s.add(uid, params)
        assert set(s.sample(logits, list(range(n)))) == support, params


def test_draws_follow_the_tempered_distribution():
    n = 4000
    probs = torch.tensor([0.5, 0.3, 0.2])
    temperature = 2.0
    logits = (probs.log() * temperature).repeat(n, 1)  # temperature 2 undoes the doubling
    s = Sampler(CPU, seed=3)
    for uid in range(n):
        s.add(uid, SamplingParams(temperature=temperature))
    counts = torch.bincount(torch.tensor(s.sample(logits, list(range(n)))), minlength=3).float() / n
    # Five standard deviations of a frequency estimate from 4000 draws.
    assert torch.all((counts - probs).abs() < 5 * torch.sqrt(probs * (1 - probs) / n))


def test_seeded_draws_do_not_depend_on_the_batch():
    logits = torch.randn(5, 100, generator=torch.Generator().manual_seed(2))
    params = SamplingParams(temperature=1.0, top_p=0.9, seed=42)
    alone = Sampler(CPU)
    alone.add(9, params)
    batched = sampler_with([SamplingParams(temperature=0.7, seed=i) for i in range(4)])
    batched.add(9, params)
    for _ in range(3):
        a = alone.sample(logits[2:3], [9])
        b = batched.sample(logits[[0, 1, 2, 3]], [0, 1, 9, 3])
        assert a[0] == b[2]


def test_engine_sampling_is_reproducible_per_request():
    loaded = load_model("tiny")
    prompt = list(range(10, 40))
    params = SamplingParams(temperature=1.0, top_k=50, seed=1234)

    def run(batch_mates: int) -> list[int]:
        eng = EngineRunner(loaded, RunnerConfig(num_blocks=128))
        others = [SamplingParams(temperature=1.0, seed=i) for i in range(batch_mates)]
        outs = eng.generate([prompt] + [list(range(i, i + 7)) for i in range(batch_mates)],
                            [params] + others, max_tokens=20)
        return outs[0]

    alone = run(0)
    assert run(3) == alone
    assert alone != EngineRunner(loaded, RunnerConfig(num_blocks=128)).generate([prompt], max_tokens=20)[0]


@pytest.mark.parametrize("kwargs", [dict(temperature=-1.0), dict(top_p=0.0), dict(top_p=1.5)])
def test_invalid_params_are_rejected(kwargs):
    with pytest.raises(ValueError):
        SamplingParams(**kwargs)


def test_temperature_zero_is_greedy_whatever_the_seed():
    s = Sampler(CPU)
    s.add(0, SamplingParams(temperature=0.0, top_p=0.5, seed=5))
    logits = torch.tensor([[0.0, 3.0, math.log(2.0)]])
    assert s.sample(logits, [0]) == [1]
