"""DeepSeek-V3 (MLA), Kimi-K2.5, gpt-oss, MiniMax-M2.5, Qwen3-235B and Llama-3.1-405B against published figures."""

from __future__ import annotations

from typing import Any

import pytest

from kairos.errors import KairosError
from kairos.models import ModelArch, load_model


def _embedding_tables(model: ModelArch) -> int:
    return (1 if model.tie_word_embeddings else 2) * model.vocab_size * model.hidden_size


@pytest.mark.parametrize(
    ("name", "total", "active"),
    [
        ("deepseek-v3", 671e9, 37e9),  # DeepSeek-V3 report: 671B total, 37B activated (MTP module not counted)
        ("deepseek-r1", 671e9, 37e9),
        ("qwen3-235b-a22b", 235e9, 22e9),
        ("kimi-k2.5", 1.0e12, 32e9),  # Kimi-K2: 1T total (1.04T with the vision tower), 32B activated
        ("llama-3.1-405b", 405e9, 405e9),
    ],
)
def test_parameter_counts_match_published_totals(name: str, total: float, active: float) -> None:
    model = load_model(name)
    assert model.num_params == pytest.approx(total, rel=0.03)
    assert model.num_active_params == pytest.approx(active, rel=0.03)


def test_gpt_oss_matches_the_model_card() -> None:
    # OpenAI's card: 116.83B total, 5.13B active, which leaves out the embedding table
    # (a token reads one row of it); checkpoints of 60.8 GiB (120b) and 12.8 GiB (20b).
    big, small = load_model("gpt-oss-120b"), load_model("gpt-oss-20b")
    assert big.num_params == pytest.approx(116.83e9, rel=0.01)
    assert big.num_active_params - big.vocab_size * big.hidden_size == pytest.approx(5.13e9, rel=0.01)
    assert big.weight_bytes / 2**30 == pytest.approx(60.8, rel=0.02)
    assert small.weight_bytes / 2**30 == pytest.approx(12.8, rel=0.02)


def test_minimax_m2_5_counts() -> None:
    model = load_model("minimax-m2.5")  # 229B total, 10B active (without the embedding tables)
    assert model.num_params == pytest.approx(229e9, rel=0.01)
    assert model.num_active_params - _embedding_tables(model) == pytest.approx(10e9, rel=0.05)
    assert (model.num_experts, model.experts_per_token, model.moe_intermediate_size) == (256, 8, 1536)
    assert model.weights_dtype == "fp8_block"  # the released checkpoint's quantization_config (128x128 blocks)


def test_deepseek_v3_mla_shapes() -> None:
    model = load_model("deepseek-v3")
    assert model.is_mla and model.is_moe
    assert (model.num_kv_heads, model.head_dim, model.v_head_dim) == (1, 192, 128)
    q = 7168 * 1536 + 1536 * 128 * 192  # q_a_proj, q_b_proj
    kv = 7168 * (512 + 64) + 512 * 128 * (128 + 128)  # kv_a_proj_with_mqa, kv_b_proj
    assert model.attention_params_per_layer == q + kv + 128 * 128 * 7168
    assert (model.num_dense_mlp_layers, model.num_moe_layers) == (3, 58)
    assert model.weights_dtype == "fp8_block"


def test_mla_kv_cache_is_one_latent_replicated_on_every_rank() -> None:
    model = load_model("deepseek-v3")
    assert model.kv_bytes_per_token == 61 * (512 + 64) * 2
    for tp in (1, 2, 8, 16):
        assert model.kv_bytes_per_token_per_gpu(tp) == model.kv_bytes_per_token
        assert model.kv_heads_per_gpu(tp) == 1
    assert model.with_precision(kv_cache_dtype="fp8").kv_bytes_per_token_per_gpu(8) == 61 * 576
    with pytest.raises(KairosError, match="128 attention heads"):
        model.check_tp(3)


def _mla_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "model_type": "deepseek_v3", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 1000, "max_position_embeddings": 4096,
        "q_lora_rank": None, "kv_lora_rank": 64, "qk_nope_head_dim": 32, "qk_rope_head_dim": 16, "v_head_dim": 32,
        "n_routed_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 64, "n_shared_experts": 1,
        "first_k_dense_replace": 1,
    }
    config.update(overrides)
    return config


def test_mla_without_q_lora_uses_a_plain_q_proj_and_dense_first_layers() -> None:
    model = ModelArch.from_hf_config(_mla_config(), name="lite")
    attention = 256 * 4 * 48 + 256 * (64 + 16) + 64 * 4 * (32 + 32) + 4 * 32 * 256
    assert model.attention_params_per_layer == attention
    moe = 8 * 3 * 256 * 64 + 256 * 8 + 3 * 256 * 64
    expected = 4 * (attention + 2 * 256) + 3 * 256 * 512 + 3 * moe + 2 * 1000 * 256 + 256
    assert model.num_params == expected
    assert model.num_params - model.num_active_params == 3 * 6 * 3 * 256 * 64
    assert model.kv_bytes_per_token == 4 * 80 * 2


def test_mla_tp_only_needs_to_split_the_query_heads() -> None:
    model = ModelArch.from_hf_config(_mla_config(num_attention_heads=8), name="eight-heads")
    model.check_tp(8)  # one latent "KV head" would not divide 8 ranks for GQA
    with pytest.raises(KairosError, match="8 attention heads"):
        model.check_tp(16)


def test_kimi_k2_5_reads_its_text_config() -> None:
    model = load_model("kimi-k2.5")
    assert model.is_mla
    assert (model.num_experts, model.num_dense_layers, model.num_heads) == (384, 1, 64)
    assert (model.weights_dtype, model.quant_scope, model.int4_group_size) == ("int4", "experts", 32)
    assert model.max_position_embeddings == 262_144
    bare = ModelArch.from_hf_config(
        {**_mla_config(), "model_type": "kimi_k2"}, name="k2")  # Kimi-K2's own model_type
    wrapped = ModelArch.from_hf_config(
        {"model_type": "kimi_k25", "text_config": {**_mla_config(), "model_type": "kimi_k2"}}, name="k2")
    assert bare == wrapped


def test_gpt_oss_kv_counts_only_full_attention_layers() -> None:
    model = load_model("gpt-oss-120b")
    assert (model.num_sliding_layers, model.sliding_window, model.num_full_attention_layers) == (18, 128, 18)
    assert model.kv_bytes_per_token == 18 * 2 * 8 * 64 * 2
    assert model.kv_bytes_per_token_per_gpu(8) == model.kv_bytes_per_token // 8
    assert (model.num_experts, model.experts_per_token, model.moe_intermediate_size) == (128, 4, 2880)
    # Attention (and the router, embeddings) stay bf16; only the experts are mxfp4.
    experts = 36 * 128 * model.expert_params
    assert model.weight_bytes == (model.num_params - experts) * 2 + experts * (4 + 8 / 32) / 8


def test_missing_mla_field_is_named() -> None:
    config = _mla_config()
    del config["kv_lora_rank"]
    with pytest.raises(KairosError, match="kv_lora_rank"):
        ModelArch.from_hf_config(config, name="broken")
