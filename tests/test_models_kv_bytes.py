"""KV bytes of a run of tokens, and their split over prefill and decode GPUs."""

from __future__ import annotations

import itertools

import pytest

from kairos.errors import KairosError
from kairos.models import ModelArch, kv_bytes, kv_shards, load_model

LLAMA_8B_TOKEN = 2 * 32 * 8 * 128 * 2  # K and V, 32 layers, 8 KV heads of 128, bf16
DEEPSEEK_V3_TOKEN = 61 * (512 + 64) * 2  # 61 layers of one latent (kv_lora_rank + rope dims), bf16


def test_gqa_dense_bytes_by_hand() -> None:
    llama = load_model("llama-3.1-8b")
    assert kv_bytes(llama, 1000) == 1000 * LLAMA_8B_TOKEN == 131_072_000
    assert kv_bytes(llama.with_precision(kv_cache_dtype="fp8"), 1000) == 65_536_000
    assert kv_bytes(llama, 0) == 0


def test_mla_bytes_by_hand() -> None:
    deepseek = load_model("deepseek-v3")
    assert deepseek.is_mla
    assert kv_bytes(deepseek, 1000) == 1000 * DEEPSEEK_V3_TOKEN == 70_272_000


def test_matches_a_published_transfer_size() -> None:
    # Mooncake's vLLM P/D benchmark moves 4.50 GB (GiB) for a 32,768-token Qwen3-8B prompt.
    assert kv_bytes(load_model("qwen3-8b"), 32_768) / 2**30 == pytest.approx(4.5)


def test_gqa_heads_split_over_both_sides() -> None:
    llama = load_model("llama-3.1-8b")
    head = 1000 * LLAMA_8B_TOKEN // 8
    same = kv_shards(llama, 1000, 1, 1)
    assert same.bytes_per_link == same.bytes_sent == kv_bytes(llama, 1000)
    wider_decode = kv_shards(llama, 1000, 2, 4)  # each prefill GPU sends its 4 heads to 2 decode GPUs
    assert (wider_decode.prefill_bytes_per_gpu, wider_decode.decode_bytes_per_gpu) == (4 * head, 2 * head)
    assert wider_decode.send_bytes_per_gpu == wider_decode.bytes_per_link == 4 * head
    wider_prefill = kv_shards(llama, 1000, 8, 2)  # each decode GPU gathers 4 heads from 4 prefill GPUs
    assert wider_prefill.send_bytes_per_gpu == head
    assert wider_prefill.bytes_per_link == 4 * head
    assert wider_prefill.bytes_sent == kv_bytes(llama, 1000)


def test_replicated_heads_are_sent_once_per_copy() -> None:
    llama = load_model("llama-3.1-8b")  # 8 KV heads
    head = 1000 * LLAMA_8B_TOKEN // 8
    fan_out = kv_shards(llama, 1000, 1, 16)  # 16 decode GPUs each need one of 8 heads: 2 copies
    assert fan_out.decode_bytes_per_gpu == head
    assert fan_out.send_bytes_per_gpu == fan_out.bytes_sent == 16 * head
    both = kv_shards(llama, 1000, 16, 16)  # every decode GPU reads its head from its own prefill copy
    assert both.bytes_per_link == head


def test_mla_latent_is_replicated_on_every_gpu() -> None:
    deepseek = load_model("deepseek-v3")
    latent = kv_bytes(deepseek, 1000)
    same = kv_shards(deepseek, 1000, 8, 8)
    assert same.prefill_bytes_per_gpu == same.decode_bytes_per_gpu == same.bytes_per_link == latent
    assert same.bytes_sent == 8 * latent
    assert kv_shards(deepseek, 1000, 8, 1).bytes_per_link == latent
    assert kv_shards(deepseek, 1000, 2, 8).send_bytes_per_gpu == 4 * latent


@pytest.mark.parametrize("name", ["llama-3.1-8b", "qwen3-30b-a3b", "deepseek-v3"])
def test_shards_agree_with_model_arch_and_cover_every_decode_gpu(name: str) -> None:
    model = load_model(name)
    tps = [tp for tp in (1, 2, 4, 8, 16) if _tp_ok(model, tp)]
    for a, b in itertools.product(tps, tps):
        shards = kv_shards(model, 777, a, b)
        assert shards.prefill_bytes_per_gpu == 777 * model.kv_bytes_per_token_per_gpu(a)
        assert shards.decode_bytes_per_gpu == 777 * model.kv_bytes_per_token_per_gpu(b)
        assert a * shards.send_bytes_per_gpu >= shards.bytes_sent >= kv_bytes(model, 777)
        assert shards.bytes_per_link >= kv_bytes(model, 777) / max(a, b)


def test_bad_inputs_are_kairos_errors() -> None:
    llama = load_model("llama-3.1-8b")
    with pytest.raises(KairosError, match="zero or more tokens"):
        kv_shards(llama, -1, 1, 1)
    with pytest.raises(KairosError, match="not divisible by --tp 3"):
        kv_shards(llama, 10, 3, 1)


def _tp_ok(model: ModelArch, tp: int) -> bool:
    try:
        model.check_tp(tp)
    except KairosError:
        return False
    return True
