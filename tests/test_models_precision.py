"""Weight and KV-cache precision: stored bytes, with_precision, quantization_config mapping."""

from __future__ import annotations

from typing import Any

import pytest

from kairos.errors import KairosError
from kairos.models import ModelArch, load_model

# Llama-3.1-8B: 32 layers of attention (4096 x (4096 + 2 x 1024) + 4096 x 4096) and a
# SwiGLU MLP (3 x 4096 x 14336); the rest is embeddings, lm_head and norms.
LLAMA_8B_LINEAR = 32 * (4096 * (4096 + 2 * 1024) + 4096 * 4096 + 3 * 4096 * 14336)
LLAMA_8B_OTHER = 2 * 128_256 * 4096 + 65 * 4096


def test_llama_linear_and_other_parameters_add_up() -> None:
    model = load_model("llama-3.1-8b")
    assert model.num_params == LLAMA_8B_LINEAR + LLAMA_8B_OTHER
    assert model.quantized_params == 0
    assert model.with_precision("fp8").quantized_params == LLAMA_8B_LINEAR


def test_fp8_weights_are_one_byte_but_embeddings_stay_bf16() -> None:
    bf16 = load_model("llama-3.1-8b")
    fp8 = bf16.with_precision("fp8")
    assert fp8.weight_bytes == LLAMA_8B_LINEAR + 2 * LLAMA_8B_OTHER
    assert 0.55 < fp8.weight_bytes / bf16.weight_bytes < 0.6  # about half: 1 GB of tables stay 16-bit
    assert fp8.dtype_bytes == 2  # activations stay 16-bit
    assert fp8.num_params == bf16.num_params


@pytest.mark.parametrize(
    ("dtype", "bits"),
    [
        ("nvfp4", 4 + 8 / 16),  # one fp8 scale per 16 weights
        ("mxfp4", 4 + 8 / 32),  # one 8-bit scale per 32 weights
        ("int4", 4 + 16 / 128),  # one bf16 scale per group of 128
        ("fp16", 16),
    ],
)
def test_four_bit_formats_count_their_scales(dtype: str, bits: float) -> None:
    model = load_model("llama-3.1-8b").with_precision(dtype)
    assert model.weight_bytes == pytest.approx(LLAMA_8B_LINEAR * bits / 8 + 2 * LLAMA_8B_OTHER, abs=1)


def test_moe_router_stays_bf16_and_experts_are_quantized() -> None:
    model = load_model("qwen3-30b-a3b").with_precision("fp8")
    attention = 2048 * (32 * 128 + 2 * 4 * 128) + 32 * 128 * 2048
    experts = 128 * 3 * 2048 * 768
    assert model.quantized_params == 48 * (attention + experts)
    assert model.num_params - model.quantized_params == 48 * (2048 * 128 + 2 * 2048) + 2 * 151_936 * 2048 + 2048


def test_fp8_kv_cache_halves_kv_bytes() -> None:
    bf16 = load_model("llama-3.1-8b")
    fp8 = bf16.with_precision(kv_cache_dtype="fp8")
    assert fp8.kv_dtype_bytes == 1
    assert fp8.kv_bytes_per_token == bf16.kv_bytes_per_token // 2 == 65_536
    assert fp8.kv_bytes_per_token_per_gpu(4) == bf16.kv_bytes_per_token_per_gpu(4) // 2
    assert fp8.weight_bytes == bf16.weight_bytes


def test_with_precision_none_keeps_and_names_are_case_insensitive() -> None:
    model = load_model("llama-3.1-8b").with_precision("FP8", "fp8")
    assert (model.weights_dtype, model.kv_cache_dtype) == ("fp8", "fp8")
    same = model.with_precision(None, None)
    assert same == model
    auto = model.with_precision(kv_cache_dtype="auto")
    assert (auto.weights_dtype, auto.kv_dtype_bytes) == ("fp8", 2)


@pytest.mark.parametrize(
    ("weights", "kv", "message"),
    [
        ("int8", None, r"unknown weights dtype 'int8' \(accepted: bf16, fp16, fp8, fp8_block, nvfp4, mxfp4, int4\)"),
        (None, "int4", r"unknown KV-cache dtype 'int4' \(accepted: auto, bf16, fp16, fp8\)"),
    ],
)
def test_unknown_precision_lists_the_accepted_names(weights: str | None, kv: str | None, message: str) -> None:
    with pytest.raises(KairosError, match=message):
        load_model("llama-3.1-8b").with_precision(weights, kv)


def test_a_new_weights_dtype_applies_to_every_linear_layer() -> None:
    gpt_oss = load_model("gpt-oss-120b")  # mxfp4 experts, bf16 attention
    assert gpt_oss.quant_scope == "mlp"
    assert gpt_oss.with_precision("bf16").weight_bytes == 2 * gpt_oss.num_params
    fp8 = gpt_oss.with_precision("fp8")
    assert fp8.quant_scope == "linear"
    per_layer = gpt_oss.attention_params_per_layer + 128 * gpt_oss.expert_params
    assert fp8.quantized_params == gpt_oss.num_layers * per_layer


def _tiny(quantization: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "model_type": "qwen3_moe", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000, "max_position_embeddings": 2048,
        "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
    }
    if quantization is not None:
        config["quantization_config"] = quantization
    config.update(overrides)
    return config


def _ct(weights: dict[str, Any], fmt: str, **extra: Any) -> dict[str, Any]:
    return {"quant_method": "compressed-tensors", "format": fmt,
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights}}, **extra}


KIMI_IGNORE = ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*", r"re:.*mlp\.(gate|up|gate_up|down)_proj.*"]


@pytest.mark.parametrize(
    ("quantization", "expected"),
    [
        ({"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}, ("fp8_block", "linear", 128)),
        (_ct({"num_bits": 8, "type": "float", "strategy": "block"}, "float-quantized"), ("fp8_block", "linear", 128)),
        ({"quant_method": "fp8", "modules_to_not_convert": ["gate", "lm_head"]}, ("fp8", "linear", 128)),
        (_ct({"num_bits": 8, "type": "float", "strategy": "channel"}, "float-quantized"), ("fp8", "linear", 128)),
        (_ct({"num_bits": 4, "type": "float", "group_size": 16}, "nvfp4-pack-quantized"), ("nvfp4", "linear", 128)),
        (_ct({"num_bits": 4, "type": "float", "group_size": 32}, "mxfp4-pack-quantized"), ("mxfp4", "linear", 128)),
        (_ct({"num_bits": 4, "type": "int", "group_size": 32}, "pack-quantized", ignore=KIMI_IGNORE),
         ("int4", "experts", 32)),
        ({"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn", "lm_head"]},
         ("mxfp4", "mlp", 128)),
        ({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True}, ("int4", "linear", 128)),
        ({"quant_method": "gptq", "bits": 4, "group_size": -1}, ("int4", "linear", 0)),
        ({"quant_method": "modelopt", "quant_algo": "NVFP4", "exclude_modules": ["lm_head"]}, ("nvfp4", "linear", 128)),
        ({"quant_algo": "FP8", "ignore": ["lm_head"]}, ("fp8", "linear", 128)),
    ],
)
def test_quantization_config_sets_the_weights_dtype(
    quantization: dict[str, Any], expected: tuple[str, str, int]
) -> None:
    model = ModelArch.from_hf_config(_tiny(quantization), name="tiny")
    assert (model.weights_dtype, model.quant_scope, model.int4_group_size) == expected
    assert model.kv_cache_dtype == "bf16"  # the KV cache dtype is the serving engine's choice


def test_experts_only_scope_quantizes_only_routed_experts() -> None:
    quantization = _ct({"num_bits": 4, "type": "int", "group_size": 32}, "pack-quantized", ignore=KIMI_IGNORE)
    model = ModelArch.from_hf_config(_tiny(quantization), name="tiny")
    experts = 2 * 8 * 3 * 256 * 64
    assert model.quantized_params == experts
    assert model.weight_bytes == (model.num_params - experts) * 2 + experts * (4 + 16 / 32) / 8


def test_experts_scope_on_a_dense_model_quantizes_its_mlps() -> None:
    quantization = _ct({"num_bits": 4, "type": "int", "group_size": 128}, "pack-quantized", ignore=KIMI_IGNORE)
    config = _tiny(quantization, model_type="llama")
    model = ModelArch.from_hf_config(config, name="dense")
    assert model.quant_scope == "mlp"
    assert model.quantized_params == 2 * 3 * 256 * 512


@pytest.mark.parametrize(
    ("quantization", "named"),
    [
        ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "bitsandbytes"),
        ({"quant_method": "gptq", "bits": 8, "group_size": 128}, "8-bit gptq"),
        (_ct({"num_bits": 8, "type": "int"}, "int-quantized"), "compressed-tensors"),
        ({"quant_method": "modelopt", "quant_algo": "MIXED_PRECISION"}, "MIXED_PRECISION"),
        ({"bits": 4}, "without quant_method"),
    ],
)
def test_unmappable_quantization_is_an_error_naming_it(quantization: dict[str, Any], named: str) -> None:
    with pytest.raises(KairosError, match=f"model 'tiny' uses .*{named}.*cannot size") as err:
        ModelArch.from_hf_config(_tiny(quantization), name="tiny")
    assert "\n" not in str(err.value)


def test_routed_expert_bytes_follow_the_weights_dtype() -> None:
    deepseek = load_model("deepseek-v3")  # fp8 checkpoint; 58 MoE layers after 3 dense ones
    experts = 58 * 256 * 3 * 7168 * 2048
    assert deepseek.routed_expert_bytes == experts
    assert deepseek.with_precision("bf16").routed_expert_bytes == 2 * experts
    assert deepseek.with_precision("nvfp4").routed_expert_bytes == experts * 9 // 16
    assert load_model("llama-3.1-8b").routed_expert_bytes == 0
