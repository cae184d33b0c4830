"""Model architecture: the shapes that decide weight bytes, KV bytes and FLOPs."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from kairos.errors import KairosError
from kairos.models.hf_config import arch_fields
from kairos.models.precision import (
    INT4_GROUP_SIZE,
    QUANT_SCOPES,
    UNQUANTIZED,
    bits_per_weight,
    check_kv_cache_dtype,
    check_weights_dtype,
)

ATTENTION_KINDS = ("gqa", "mla")


@dataclass(frozen=True, slots=True)
class ModelArch:
    """A decoder-only transformer (dense, MoE, GQA or MLA attention) as far as serving cost is concerned.

    Each layer is attention, then either a SwiGLU MLP of `intermediate_size` (dense
    models, and the first `num_dense_layers` layers of a DeepSeek-style MoE) or
    `num_experts` SwiGLU experts of `moe_intermediate_size` with top-`experts_per_token`
    routing plus `num_shared_experts` always-on experts of `shared_expert_intermediate_size`.

    Attention is grouped-query (`gqa`: K and V of `num_kv_heads` heads of `head_dim`
    per token and layer) or DeepSeek's multi-head latent attention (`mla`: one latent
    of `kv_lora_rank` + `qk_rope_head_dim` per token and layer, shared by all heads,
    so `num_kv_heads` is 1 and `head_dim` is the query/key head size).
    `num_sliding_layers` layers attend to a window of `sliding_window` tokens only
    (gpt-oss); the KV figures count the full-attention layers alone, since the
    window's KV is bounded and small (vLLM's hybrid allocator gives those layers a
    window's worth of blocks per request).

    Precision: linear layers are stored in `weights_dtype` (of `quant_scope`: every
    linear, all but attention, or the routed experts only; int4 with one scale per
    `int4_group_size` weights), the KV cache in `kv_cache_dtype`. `dtype_bytes` stays
    the activation (16-bit) element size.

    Biases, attention sinks and per-head or latent norm weights are left out: together
    they are under 0.01% of the parameters.
    """

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool = False
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    num_shared_experts: int = 0
    shared_expert_intermediate_size: int = 0
    dtype_bytes: int = 2
    hf_id: str = ""
    num_dense_layers: int = 0
    attention: str = "gqa"
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    num_sliding_layers: int = 0
    sliding_window: int = 0
    weights_dtype: str = "bf16"
    kv_cache_dtype: str = "bf16"
    quant_scope: str = "linear"
    int4_group_size: int = INT4_GROUP_SIZE

    def __post_init__(self) -> None:
        # Precision names are case-insensitive; store them canonical (lower case).
        object.__setattr__(self, "weights_dtype", check_weights_dtype(self.weights_dtype))
        object.__setattr__(self, "kv_cache_dtype", check_kv_cache_dtype(self.kv_cache_dtype))
        if self.attention not in ATTENTION_KINDS:
            raise KairosError(f"unknown attention kind '{self.attention}' (accepted: {', '.join(ATTENTION_KINDS)})")
        if self.quant_scope not in QUANT_SCOPES:
            raise KairosError(f"unknown quant_scope '{self.quant_scope}' (accepted: {', '.join(QUANT_SCOPES)})")

    # ---- precision ---------------------------------------------------------------

    def with_precision(self, weights_dtype: str | None = None, kv_cache_dtype: str | None = None) -> ModelArch:
        """The same architecture stored in other dtypes; None keeps the current one.

        A new weights dtype applies to every linear layer (`quant_scope` 'linear'), as
        quantizing a checkpoint online does.
        """
        changes: dict[str, Any] = {}
        if weights_dtype is not None:
            weights = check_weights_dtype(weights_dtype)
            if weights != self.weights_dtype:
                changes.update(weights_dtype=weights, quant_scope="linear")
        if kv_cache_dtype is not None:
            changes["kv_cache_dtype"] = check_kv_cache_dtype(kv_cache_dtype)
        return dataclasses.replace(self, **changes)

    @property
    def kv_dtype_bytes(self) -> int:
        """Bytes per KV-cache element: 1 for fp8, else the model's 16-bit dtype."""
        return 1 if self.kv_cache_dtype == "fp8" else self.dtype_bytes

    # ---- parameters --------------------------------------------------------------

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.attention == "mla"

    @property
    def attention_params_per_layer(self) -> int:
        """Attention projection weights of one layer (Q, K, V and output; MLA's down/up projections)."""
        h = self.hidden_size
        if self.is_mla:
            q_width = self.num_heads * self.head_dim
            q = h * self.q_lora_rank + self.q_lora_rank * q_width if self.q_lora_rank else h * q_width
            kv_down = h * (self.kv_lora_rank + self.qk_rope_head_dim)
            nope = self.head_dim - self.qk_rope_head_dim
            kv_up = self.kv_lora_rank * self.num_heads * (nope + self.v_head_dim)
            return q + kv_down + kv_up + self.num_heads * self.v_head_dim * h
        q_width = self.num_heads * self.head_dim
        kv_width = self.num_kv_heads * self.head_dim
        return h * (q_width + 2 * kv_width) + q_width * h

    @property
    def dense_mlp_params(self) -> int:
        """Weights of one dense SwiGLU MLP (gate, up and down projections)."""
        return 3 * self.hidden_size * self.intermediate_size

    @property
    def expert_params(self) -> int:
        """Weights of one routed expert (gate, up and down projections)."""
        return 3 * self.hidden_size * self.moe_intermediate_size

    @property
    def shared_expert_params_per_layer(self) -> int:
        return self.num_shared_experts * 3 * self.hidden_size * self.shared_expert_intermediate_size

    @property
    def router_params_per_layer(self) -> int:
        return self.hidden_size * self.num_experts

    @property
    def num_moe_layers(self) -> int:
        """Layers with an MoE block (all but the leading dense ones; 0 for a dense model)."""
        return self.num_layers - self.num_dense_layers if self.is_moe else 0

    @property
    def num_dense_mlp_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    def _params(self, experts: int) -> int:
        norms_per_layer = 2 * self.hidden_size
        embeddings = self.vocab_size * self.hidden_size
        lm_head = 0 if self.tie_word_embeddings else embeddings
        final_norm = self.hidden_size
        moe_per_layer = (
            experts * self.expert_params + self.router_params_per_layer + self.shared_expert_params_per_layer
        )
        return (
            self.num_layers * (self.attention_params_per_layer + norms_per_layer)
            + self.num_dense_mlp_layers * self.dense_mlp_params
            + self.num_moe_layers * moe_per_layer
            + embeddings + lm_head + final_norm
        )

    @property
    def num_params(self) -> int:
        """Total parameters, every expert included."""
        return self._params(self.num_experts)

    @property
    def num_active_params(self) -> int:
        """Parameters one token touches: only its top-k routed experts (equals num_params if dense)."""
        return self._params(self.experts_per_token)

    @property
    def quantized_params(self) -> int:
        """Parameters stored in `weights_dtype`: the linear layers of `quant_scope` (0 if unquantized).

        Embeddings, lm_head, norms and the MoE router stay in 16 bits, as in vLLM's
        fp8, nvfp4 and mxfp4 checkpoints.
        """
        if self.weights_dtype in UNQUANTIZED:
            return 0
        params = self.num_moe_layers * self.num_experts * self.expert_params
        if self.quant_scope != "experts":
            params += (self.num_dense_mlp_layers * self.dense_mlp_params
                       + self.num_moe_layers * self.shared_expert_params_per_layer)
        if self.quant_scope == "linear":
            params += self.num_layers * self.attention_params_per_layer
        return params

    @property
    def weight_bytes(self) -> int:
        """Bytes of all weights: quantized linear layers at their stored size, scales included."""
        quantized = self.quantized_params
        return (self.num_params - quantized) * self.dtype_bytes + self._quantized_bytes(quantized)

    @property
    def routed_expert_bytes(self) -> int:
        """Bytes of every routed expert of every MoE layer (what expert parallelism splits), as stored."""
        experts = self.num_moe_layers * self.num_experts * self.expert_params
        if self.weights_dtype in UNQUANTIZED:
            return experts * self.dtype_bytes
        return self._quantized_bytes(experts)  # every quant_scope quantizes the routed experts

    def _quantized_bytes(self, params: int) -> int:
        return math.ceil(params * bits_per_weight(self.weights_dtype, self.int4_group_size) / 8)

    # ---- KV cache ----------------------------------------------------------------

    @property
    def num_full_attention_layers(self) -> int:
        """Layers whose KV grows with the context (all but the sliding-window ones)."""
        return self.num_layers - self.num_sliding_layers

    @property
    def kv_elements_per_token_per_layer(self) -> int:
        """KV-cache elements one token adds to one full-attention layer (all heads, before TP)."""
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    @property
    def kv_bytes_per_token(self) -> int:
        """KV of one token across the full-attention layers, for the whole model.

        For MLA this is one copy of the latent, which every tensor-parallel rank holds.
        """
        return self.num_full_attention_layers * self.kv_elements_per_token_per_layer * self.kv_dtype_bytes

    def kv_heads_per_gpu(self, tp: int) -> int:
        """KV heads each tensor-parallel rank stores.

        Heads are split across ranks; when there are fewer KV heads than ranks, each
        rank keeps a replica of one head (vLLM's rule), so it is max(1, kv_heads // tp).
        MLA's single latent "head" is replicated on every rank.
        """
        self.check_tp(tp)
        return max(1, self.num_kv_heads // tp)

    def kv_bytes_per_token_per_gpu(self, tp: int) -> int:
        """KV of one token across the full-attention layers held by one tensor-parallel rank.

        MLA's latent is not sharded: vLLM replicates it on every rank.
        """
        if self.is_mla:
            self.check_tp(tp)
            return self.kv_bytes_per_token
        per_layer = 2 * self.kv_heads_per_gpu(tp) * self.head_dim
        return self.num_full_attention_layers * per_layer * self.kv_dtype_bytes

    def check_tp(self, tp: int) -> None:
        """Raise KairosError unless heads can be split over `tp` ranks as vLLM requires."""
        if tp < 1:
            raise KairosError(f"tensor-parallel size must be at least 1, got {tp}")
        if self.num_heads % tp:
            raise KairosError(
                f"{self.name} has {self.num_heads} attention heads, not divisible by --tp {tp}"
            )
        if self.is_mla:
            return  # the latent KV is replicated, not split, so any tp that splits the heads works
        kv = self.num_kv_heads
        if (kv % tp) if kv >= tp else (tp % kv):
            raise KairosError(
                f"{self.name} has {kv} KV heads: --tp {tp} must divide them or be a multiple of them"
            )

    @classmethod
    def from_hf_config(
        cls, config: dict[str, Any], name: str, hf_id: str = "", dtype_bytes: int = 2
    ) -> ModelArch:
        """Build from a Hugging Face config.json dict.

        Supported: Llama, Mistral, Qwen2/3 (dense); Mixtral, Qwen2/3-MoE, gpt-oss,
        MiniMax-M2 (MoE); DeepSeek-V2/V3 and Kimi-K2/K2.5 (MLA + MoE). A
        `quantization_config` sets `weights_dtype` (a KairosError names what cannot be
        mapped); the KV cache stays 16-bit, as vLLM's default `--kv-cache-dtype auto`.

        Not modelled: sliding windows without `layer_types` (Mistral v0.1 is treated
        as full attention, which overestimates its KV use past 4096 tokens) and
        Qwen-MoE's `decoder_sparse_step`/`mlp_only_layers` (every released Qwen3-MoE
        model has an MoE block in every layer).
        """
        return cls(name=name, hf_id=hf_id, dtype_bytes=dtype_bytes, **arch_fields(config, name))
