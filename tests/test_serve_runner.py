"""EngineRunner: request validation, EOS, abort, and that every block and sampler slot comes back."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

torch = pytest.importorskip("torch")

from kairos.engine import RequestStatus  # noqa: E402
from kairos.errors import KairosError  # noqa: E402
from kairos.serve import EngineRunner, RunnerConfig, SamplingParams, load_model  # noqa: E402
from kairos.serve.tokenizer import ByteTokenizer  # noqa: E402

PROMPT = list(range(40, 72))




@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


def make(loaded, **kw) -> EngineRunner:
    return EngineRunner(loaded, RunnerConfig(num_blocks=kw.pop("num_blocks", 64), check_invariants=True, **kw))


@pytest.mark.parametrize("prompt, max_tokens, message", [
    ([], 4, "empty"),
    ([1, 2], 0, "max_tokens"),
    ([1, 600], 4, "token ids"),
    (list(range(200)), 100, "exceeds the KV cache"),
])
def test_requests_that_cannot_run_are_rejected(tiny, prompt, max_tokens, message):
    with pytest.raises(KairosError, match=message):
        make(tiny, num_blocks=16).add(prompt, max_tokens=max_tokens)


def test_unchunked_prompt_must_fit_the_step_budget(tiny):
    eng = EngineRunner(tiny, RunnerConfig(num_blocks=64, max_num_batched_tokens=32, enable_chunked_prefill=False))
    with pytest.raises(KairosError, match="chunked prefill disabled"):
        eng.add(list(range(30)), max_tokens=3)
    assert len(eng.generate([list(range(20))], max_tokens=12)[0]) == 12


def test_generation_stops_at_eos(tiny):
    free_run = make(tiny, ignore_eos=True).generate([PROMPT], max_tokens=12)[0]
    stop = free_run[4]
    # A tokenizer whose EOS is the 5th generated token: generation ends right after it.
    eos_tokenizer = type("EosTokenizer", (ByteTokenizer,), {"eos_token_id": stop})()
    eng = make(dataclasses.replace(tiny, tokenizer=eos_tokenizer))
    req = eng.add(PROMPT, max_tokens=12)
    while eng.has_work():
        eng.step()
    assert eng.output_ids(req) == free_run[:free_run.index(stop) + 1]
    assert req.finish_reason == "stop"


def test_max_tokens_and_finish_reason(tiny):
    eng = make(tiny, ignore_eos=True)
    reqs = [eng.add(PROMPT[:n], max_tokens=m) for n, m in ((5, 1), (30, 7))]
    while eng.has_work():
        eng.step()
    assert [len(eng.output_ids(r)) for r in reqs] == [1, 7]
    assert all(r.finish_reason == "length" for r in reqs)


def test_abort_frees_everything(tiny):
    eng = make(tiny)
    keep = eng.add(PROMPT, max_tokens=6)
    running = eng.add(PROMPT[::-1], SamplingParams(temperature=1.0, seed=3), max_tokens=50)
    eng.step()
    waiting = eng.add(PROMPT[:10], max_tokens=5)
    eng.abort(running)
    eng.abort(waiting)
    assert running.status == waiting.status == RequestStatus.FINISHED
    while eng.has_work():
        eng.step()
    assert len(eng.output_ids(keep)) == 6
    assert eng.kv.num_used_blocks == 0
    assert len(eng.executor.sampler) == 0  # per-request generators released


def test_step_without_work_is_a_no_op(tiny):
    eng = make(tiny)
    assert not eng.has_work()
    result = eng.step()
    assert not result.finished and not result.first_tokens


def test_pool_sized_from_memory_budget(tiny):
    eng = EngineRunner(tiny, RunnerConfig(kv_cache_memory=1 << 20, block_size=16))
    per_block = 2 * tiny.config.num_layers * 16 * tiny.config.kv_size * 4
    assert eng.kv.num_blocks == (1 << 20) // per_block
    pool = eng.executor.kv_pool
    assert pool.shape[:3] == (tiny.config.num_layers, 2, eng.kv.num_blocks)
    assert pool.numel() * pool.element_size() == eng.kv.num_blocks * per_block  # either layout holds the same


def test_text_round_trip_through_the_engine(tiny):
    eng = make(tiny)
    ids = eng.generate([eng.tokenizer.encode("Hello, Kairos")], max_tokens=8)[0]
    assert len(ids) == 8 and isinstance(eng.tokenizer.decode(ids), str)


def test_the_policy_runs_with_its_knobs_and_predictor(tiny):
    # One request at a time: SJF on the oracle (each request's max_tokens) finishes the shortest first.
    eng = make(tiny, max_num_seqs=1, ignore_eos=True, policy="sjf", predictor="oracle")
    reqs = [eng.add(PROMPT, max_tokens=n) for n in (12, 4, 8)]
    assert [r.predicted_output for r in reqs] == [12, 4, 8]
    finished = []
    while eng.has_work():
        finished += eng.step().finished
    assert [r.max_output for r in finished] == [4, 8, 12]
    laps = make(tiny, policy="laps", policy_options=(("short_tokens", 8),))
    assert laps.engine.scheduler.waiting.short_tokens == 8
    assert laps.engine.predictor is None
    # A policy that needs a predictor gets histogram, as in kairos simulate.
    assert type(make(tiny, policy="srpt").engine.predictor).__name__ == "HistogramPredictor"


def test_bad_policy_knobs_fail_when_the_config_is_built():
    config = RunnerConfig(policy="slack", policy_options=(("tpot_ms", 40.0),), predictor="noisy",
                          predictor_options=(("sigma", 0.5),))
    assert pickle.loads(pickle.dumps(config)) == config  # the engine process gets it pickled
    with pytest.raises(KairosError, match="has no knob bogus"):
        RunnerConfig(policy="laps", policy_options=(("bogus", 1),))
    with pytest.raises(KairosError, match="quantile must be in"):
        RunnerConfig(policy="sjf", predictor_options=(("quantile", 2.0),))
