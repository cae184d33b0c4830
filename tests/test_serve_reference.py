"""The paged engine generates exactly what transformers generates, however requests are batched.

Greedy outputs of the Kairos engine are compared token for token with
`generate(do_sample=False)` of the transformers model loaded from the same
weights (saved as a Hugging Face directory), one prompt at a time: for a mixed
batch, for arrivals during decode, for chunked prefill, on prefix-cache hits
and after preemption with recompute.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from kairos.serve import EngineRunner, RunnerConfig, load_model, save_hf_checkpoint  # noqa: E402
from kairos.serve.loader import PRESETS, random_model  # noqa: E402

MAX_NEW = 24




def make_prompts(seed: int, count: int, max_len: int = 70) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(256) for _ in range(rng.randint(1, max_len))] for _ in range(count)]


PROMPTS = make_prompts(0, 8)


class Reference:
    """transformers' greedy generation of one prompt at a time, memoised across tests."""

    def __init__(self, loaded, directory) -> None:
        save_hf_checkpoint(loaded.model, directory, loaded.tokenizer)
        self.hf = transformers.AutoModelForCausalLM.from_pretrained(directory).float().eval()
        self.eos = loaded.tokenizer.eos_token_id
        self._memo: dict[tuple[int, ...], list[int]] = {}

    def __call__(self, prompt: list[int]) -> list[int]:
        key = tuple(prompt)
        if key not in self._memo:
            ids = torch.tensor([prompt])
            with torch.inference_mode():
                out = self.hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                       max_new_tokens=MAX_NEW, eos_token_id=self.eos, pad_token_id=self.eos)
            self._memo[key] = out[0, len(prompt):].tolist()
        return self._memo[key]


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory):
    return Reference(tiny, tmp_path_factory.mktemp("tiny-hf"))


@pytest.fixture(params=["native", "sdpa"])
def attention(request) -> str:
    """Both attention paths must generate what transformers does (native skips without a compiler)."""
    if request.param == "native":
        from kairos.serve.native.build import NativeUnavailable, load_kernels

        if isinstance(found := load_kernels(), NativeUnavailable):
            pytest.skip(f"no native kernels: {found}")
    return request.param


def runner(loaded, attention: str, **kw) -> EngineRunner:
    kw.setdefault("num_blocks", 256)
    eng = EngineRunner(loaded, RunnerConfig(check_invariants=True, attention=attention, **kw))
    assert eng.attention == attention
    return eng


def test_mixed_length_batch_matches_transformers(tiny, reference, attention):
    outs = runner(tiny, attention).generate(PROMPTS, max_tokens=MAX_NEW)
    assert outs == [reference(p) for p in PROMPTS]


def test_requests_arriving_while_others_decode(tiny, reference, attention):
    eng = runner(tiny, attention, block_size=8)
    prompts = make_prompts(1, 10)
    reqs = []
    for step in range(60):
        if step % 3 == 0 and len(reqs) < len(prompts):
            reqs.append(eng.add(prompts[len(reqs)], max_tokens=MAX_NEW))
        eng.step()
    while eng.has_work():
        eng.step()
    assert [eng.output_ids(r) for r in reqs] == [reference(p) for p in prompts]


def test_chunked_prefill_matches(tiny, reference, attention):
    eng = runner(tiny, attention, block_size=4, max_num_batched_tokens=16)
    outs = eng.generate(PROMPTS, max_tokens=MAX_NEW)
    assert max(len(p) for p in PROMPTS) > 16  # prompts really were split into chunks
    assert outs == [reference(p) for p in PROMPTS]


def test_prefix_cache_hits_match(tiny, reference, attention):
    shared = list(range(100, 141))  # a 41-token system prompt: 10 full blocks of 4
    suffixes = make_prompts(3, 5, max_len=20)
    prompts = [shared + s for s in suffixes] + [shared + suffixes[0]] * 2 + [shared[:20]]
    eng = runner(tiny, attention, block_size=4)
    first = eng.add(prompts[0], max_tokens=MAX_NEW)
    eng.step()
    # Later ones hit the finished prefill of the first; the identical pair is admitted in one
    # step, so the second reads blocks the first is filling in that very forward pass.
    reqs = [first] + [eng.add(p, max_tokens=MAX_NEW) for p in prompts[1:]]
    while eng.has_work():
        eng.step()
    assert eng.kv.stats.hits >= 6 * 40
    assert all(r.cached_tokens > 0 for r in reqs[1:])
    assert [eng.output_ids(r) for r in reqs] == [reference(p) for p in prompts]


def test_preemption_and_recompute_match(tiny, reference, attention):
    # 30 blocks of 4 tokens cannot hold eight requests of up to 94 tokens at once.
    eng = runner(tiny, attention, block_size=4, num_blocks=30)
    outs = eng.generate(PROMPTS, max_tokens=MAX_NEW)
    assert eng.engine.scheduler.num_preemptions > 0
    assert outs == [reference(p) for p in PROMPTS]
    assert eng.kv.num_used_blocks == 0


def test_preemption_without_prefix_cache_matches(tiny, reference, attention):
    eng = runner(tiny, attention, block_size=4, num_blocks=30, enable_prefix_caching=False)
    outs = eng.generate(PROMPTS, max_tokens=MAX_NEW)
    assert eng.engine.scheduler.num_preemptions > 0
    assert outs == [reference(p) for p in PROMPTS]


VARIANTS = {
    # Qwen2: biases on q/k/v, tied embeddings, one KV head shared by all query heads.
    "qwen2-bias-tied-mqa": dict(model_type="qwen2", qkv_bias=True, tie_word_embeddings=True, num_kv_heads=1,
                                rope_theta=1e6, rms_norm_eps=1e-6),
    # Llama 3.1 RoPE scaling (short original context so every band is exercised), plain MHA.
    "llama3-rope-mha": dict(num_kv_heads=4, rope_theta=500000.0, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64}),
    "llama-attention-bias": dict(qkv_bias=True, o_bias=True),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_architecture_variants_match(variant, tmp_path, attention):
    loaded = random_model(dataclasses.replace(PRESETS["tiny"], **VARIANTS[variant]), seed=3)
    ref = Reference(loaded, tmp_path)
    prompts = PROMPTS[:4]
    outs = runner(loaded, attention, block_size=8, max_num_batched_tokens=32).generate(prompts, max_tokens=MAX_NEW)
    assert outs == [ref(p) for p in prompts]
