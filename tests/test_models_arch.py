"""ModelArch: parameter counts, KV sizes and Hugging Face config parsing."""

from __future__ import annotations

import pytest

from kairos.errors import KairosError
from kairos.models import ModelArch, load_model


def test_llama_3_1_8b_counts_match_the_published_checkpoint() -> None:
    model = load_model("llama-3.1-8b")
    assert model.num_params == 8_030_261_248  # safetensors total of meta-llama/Llama-3.1-8B
    assert model.num_active_params == model.num_params
    assert model.weight_bytes == 2 * model.num_params
    assert model.kv_bytes_per_token == 131_072  # 2 * 32 layers * 8 heads * 128 * 2 bytes


def test_large_dense_and_moe_parameter_counts() -> None:
    assert load_model("llama-3.1-70b").num_params == pytest.approx(70.6e9, rel=2e-3)
    mixtral = load_model("mixtral-8x7b")
    assert mixtral.num_params == pytest.approx(46.7e9, rel=2e-3)
    assert mixtral.num_active_params == pytest.approx(12.9e9, rel=2e-3)
    qwen_moe = load_model("qwen3-30b-a3b")
    assert qwen_moe.num_params == pytest.approx(30.5e9, rel=3e-3)
    assert qwen_moe.num_active_params == pytest.approx(3.3e9, rel=2e-2)


def test_moe_active_params_are_a_fraction_of_total() -> None:
    for name in ("mixtral-8x7b", "qwen3-30b-a3b"):
        model = load_model(name)
        assert model.is_moe
        assert model.num_active_params < 0.3 * model.num_params


def test_kv_heads_split_over_tp_and_replicate_when_fewer_than_ranks() -> None:
    llama = load_model("llama-3.1-8b")  # 8 KV heads
    assert llama.kv_bytes_per_token_per_gpu(1) == llama.kv_bytes_per_token
    assert llama.kv_bytes_per_token_per_gpu(2) == llama.kv_bytes_per_token // 2
    assert llama.kv_bytes_per_token_per_gpu(8) == llama.kv_bytes_per_token // 8
    qwen_moe = load_model("qwen3-30b-a3b")  # 4 KV heads: at tp 8 each rank keeps one
    assert qwen_moe.kv_heads_per_gpu(8) == 1
    assert qwen_moe.kv_bytes_per_token_per_gpu(8) == qwen_moe.kv_bytes_per_token // 4


@pytest.mark.parametrize("tp", [0, 3, 6])
def test_tp_that_cannot_split_the_heads_is_rejected(tp: int) -> None:
    with pytest.raises(KairosError, match="tp|tensor-parallel"):
        load_model("llama-3.1-8b").kv_bytes_per_token_per_gpu(tp)


def test_explicit_head_dim_wins_over_hidden_over_heads() -> None:
    model = load_model("qwen3-30b-a3b")  # hidden 2048 / 32 heads = 64, but head_dim is 128
    assert model.head_dim == 128
    assert load_model("llama-2-7b").head_dim == 4096 // 32


def _llama_config(**overrides: object) -> dict[str, object]:
    config: dict[str, object] = {
        "model_type": "llama", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
        "num_attention_heads": 4, "vocab_size": 1000, "max_position_embeddings": 2048,
    }
    config.update(overrides)
    return config


def test_missing_kv_heads_means_multi_head_attention() -> None:
    model = ModelArch.from_hf_config(_llama_config(), name="tiny")
    assert model.num_kv_heads == 4
    assert model.head_dim == 64
    assert not model.tie_word_embeddings


def test_tied_embeddings_are_counted_once() -> None:
    untied = ModelArch.from_hf_config(_llama_config(), name="a")
    tied = ModelArch.from_hf_config(_llama_config(tie_word_embeddings=True), name="b")
    assert untied.num_params - tied.num_params == 1000 * 256


def test_mixtral_fields() -> None:
    model = load_model("mixtral-8x7b")
    assert (model.num_experts, model.experts_per_token, model.moe_intermediate_size) == (8, 2, 14336)
    assert model.num_shared_experts == 0


def test_qwen_moe_shared_expert_is_always_active() -> None:
    config = _llama_config(
        model_type="qwen2_moe", num_key_value_heads=2, num_experts=8, num_experts_per_tok=2,
        moe_intermediate_size=64, shared_expert_intermediate_size=128,
    )
    model = ModelArch.from_hf_config(config, name="tiny-moe")
    assert (model.num_shared_experts, model.shared_expert_intermediate_size) == (1, 128)
    without_shared = ModelArch.from_hf_config(
        {k: v for k, v in config.items() if k != "shared_expert_intermediate_size"}, name="no-shared"
    )
    shared_params = 2 * 3 * 256 * 128  # two layers of gate, up and down
    assert model.num_params - without_shared.num_params == shared_params
    assert model.num_active_params - without_shared.num_active_params == shared_params


def test_unsupported_model_type_is_named() -> None:
    with pytest.raises(KairosError, match="unsupported model_type 'falcon'.*deepseek_v3"):
        ModelArch.from_hf_config(_llama_config(model_type="falcon"), name="falcon")


def test_missing_field_is_named() -> None:
    config = _llama_config()
    del config["vocab_size"]
    with pytest.raises(KairosError, match="vocab_size"):
        ModelArch.from_hf_config(config, name="broken")
