"""Reading a Hugging Face config.json into the fields of a `ModelArch`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kairos.errors import KairosError
from kairos.models.precision import quantization_from_config

DENSE_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
# MoE models whose `intermediate_size` is the width of each expert.
EXPERT_WIDTH_MOE_TYPES = frozenset({"mixtral", "gpt_oss", "minimax_m2"})
QWEN_MOE_TYPES = frozenset({"qwen2_moe", "qwen3_moe"})
# DeepSeek-V2/V3 architecture (multi-head latent attention); Kimi-K2 reuses it.
MLA_MODEL_TYPES = frozenset({"deepseek_v2", "deepseek_v3", "kimi_k2"})
SUPPORTED_MODEL_TYPES = DENSE_MODEL_TYPES | EXPERT_WIDTH_MOE_TYPES | QWEN_MOE_TYPES | MLA_MODEL_TYPES


def arch_fields(config: dict[str, Any], name: str) -> dict[str, Any]:
    """ModelArch keyword arguments (all but name, hf_id, dtype_bytes) from a config.json dict.

    A multimodal wrapper (Kimi-K2.5's `kimi_k25`) is read through its `text_config`:
    only the language model is counted.
    """
    text, quantization = _language_model(config)
    model_type = text.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        supported = ", ".join(sorted(SUPPORTED_MODEL_TYPES))
        raise KairosError(f"model '{name}' has unsupported model_type '{model_type}' (supported: {supported})")

    def field(key: str) -> Any:
        if text.get(key) is None:
            raise KairosError(f"config of model '{name}' lacks '{key}'")
        return text[key]

    hidden = int(field("hidden_size"))
    heads = int(field("num_attention_heads"))
    fields: dict[str, Any] = dict(
        hidden_size=hidden,
        num_layers=int(field("num_hidden_layers")),
        num_heads=heads,
        num_kv_heads=int(text.get("num_key_value_heads") or heads),
        head_dim=int(text.get("head_dim") or hidden // heads),
        intermediate_size=int(field("intermediate_size")),
        vocab_size=int(field("vocab_size")),
        max_position_embeddings=int(field("max_position_embeddings")),
        tie_word_embeddings=bool(text.get("tie_word_embeddings", False)),
    )
    if model_type in EXPERT_WIDTH_MOE_TYPES:
        fields.update(
            num_experts=int(field("num_local_experts")),
            experts_per_token=int(text.get("num_experts_per_tok") or field("experts_per_token")),
            moe_intermediate_size=int(field("intermediate_size")),
        )
    elif model_type in QWEN_MOE_TYPES:
        shared = int(text.get("shared_expert_intermediate_size") or 0)
        fields.update(
            num_experts=int(field("num_experts")),
            experts_per_token=int(field("num_experts_per_tok")),
            moe_intermediate_size=int(field("moe_intermediate_size")),
            num_shared_experts=1 if shared else 0,
            shared_expert_intermediate_size=shared,
        )
    elif model_type in MLA_MODEL_TYPES:
        fields.update(_mla_fields(text, name, field))

    sliding = sum(kind == "sliding_attention" for kind in text.get("layer_types") or [])
    if sliding:
        fields.update(num_sliding_layers=sliding, sliding_window=int(field("sliding_window")))

    if quantization:
        quant = quantization_from_config(quantization, name)
        scope = quant.quant_scope
        if scope == "experts" and not fields.get("num_experts"):
            scope = "mlp"  # a dense model has no routed experts: its MLPs are what is quantized
        fields.update(weights_dtype=quant.weights_dtype, quant_scope=scope,
                      int4_group_size=quant.int4_group_size)
    return fields


def _language_model(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the language model's config, the checkpoint's quantization_config if any)."""
    text = config
    nested = config.get("text_config")
    if config.get("model_type") not in SUPPORTED_MODEL_TYPES and isinstance(nested, dict):
        text = nested
    quantization = config.get("quantization_config") or text.get("quantization_config")
    return text, quantization if isinstance(quantization, dict) else None


def _mla_fields(config: dict[str, Any], name: str, field: Callable[[str], Any]) -> dict[str, Any]:
    """Multi-head latent attention and DeepSeek MoE: dense first layers, routed and shared experts.

    The KV cache holds one latent of kv_lora_rank + qk_rope_head_dim per token and
    layer, shared by all heads: one KV "head" (vLLM's view of MLA). `head_dim` is the
    query/key head size (nope + rope); values have `v_head_dim`. The multi-token
    prediction layers (`num_nextn_predict_layers`) are a speculative-decoding add-on
    and are not counted.
    """
    if int(config.get("moe_layer_freq") or 1) != 1:
        raise KairosError(f"model '{name}' has moe_layer_freq {config['moe_layer_freq']}: only 1 is modelled")
    nope, rope = int(field("qk_nope_head_dim")), int(field("qk_rope_head_dim"))
    expert_width = int(field("moe_intermediate_size"))
    shared = int(config.get("n_shared_experts") or 0)
    return dict(
        attention="mla",
        num_kv_heads=1,
        head_dim=nope + rope,
        q_lora_rank=int(config.get("q_lora_rank") or 0),
        kv_lora_rank=int(field("kv_lora_rank")),
        qk_rope_head_dim=rope,
        v_head_dim=int(field("v_head_dim")),
        num_experts=int(field("n_routed_experts")),
        experts_per_token=int(field("num_experts_per_tok")),
        moe_intermediate_size=expert_width,
        num_shared_experts=shared,
        shared_expert_intermediate_size=expert_width if shared else 0,
        num_dense_layers=int(config.get("first_k_dense_replace") or 0),
    )
