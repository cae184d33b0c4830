"""Model architecture: the shapes that decide weight bytes, KV bytes and FLOPs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kairos.errors import KairosError

DENSE_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
MOE_MODEL_TYPES = frozenset({"mixtral", "qwen2_moe", "qwen3_moe"})


@dataclass(frozen=True, slots=True)
class ModelArch:
    """A decoder-only transformer (dense or MoE) as far as serving cost is concerned.

    Every layer is assumed identical: attention with grouped KV heads, then either a
    SwiGLU MLP of `intermediate_size` (dense) or `num_experts` SwiGLU experts of
    `moe_intermediate_size` with top-`experts_per_token` routing plus
    `num_shared_experts` always-on experts of `shared_expert_intermediate_size`.
    Biases and per-head QK-norm weights (Qwen2, Qwen3) are left out: together they
    are under 0.01% of the parameters.
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

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def attention_params_per_layer(self) -> int:
        """Q, K, V and output projection weights of one layer."""
        q_width = self.num_heads * self.head_dim
        kv_width = self.num_kv_heads * self.head_dim
        return self.hidden_size * (q_width + 2 * kv_width) + q_width * self.hidden_size

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

    def _mlp_params_per_layer(self, experts: int) -> int:
        if not self.is_moe:
            return 3 * self.hidden_size * self.intermediate_size
        return (
            experts * self.expert_params
            + self.router_params_per_layer
            + self.shared_expert_params_per_layer
        )

    def _params(self, experts: int) -> int:
        norms_per_layer = 2 * self.hidden_size
        per_layer = self.attention_params_per_layer + self._mlp_params_per_layer(experts) + norms_per_layer
        embeddings = self.vocab_size * self.hidden_size
        lm_head = 0 if self.tie_word_embeddings else embeddings
        final_norm = self.hidden_size
        return self.num_layers * per_layer + embeddings + lm_head + final_norm

    @property
    def num_params(self) -> int:
        """Total parameters, every expert included."""
        return self._params(self.num_experts)

    @property
    def num_active_params(self) -> int:
        """Parameters one token touches: only its top-k routed experts (equals num_params if dense)."""
        return self._params(self.experts_per_token)

    @property
    def weight_bytes(self) -> int:
        return self.num_params * self.dtype_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        """K and V of one token across all layers, for the whole model (all GPUs)."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.dtype_bytes

    def kv_heads_per_gpu(self, tp: int) -> int:
        """KV heads each tensor-parallel rank stores.

        Heads are split across ranks; when there are fewer KV heads than ranks, each
        rank keeps a replica of one head (vLLM's rule), so it is max(1, kv_heads // tp).
        """
        self.check_tp(tp)
        return max(1, self.num_kv_heads // tp)

    def kv_bytes_per_token_per_gpu(self, tp: int) -> int:
        """K and V of one token across all layers held by one tensor-parallel rank."""
        return 2 * self.num_layers * self.kv_heads_per_gpu(tp) * self.head_dim * self.dtype_bytes

    def check_tp(self, tp: int) -> None:
        """Raise KairosError unless heads can be split over `tp` ranks as vLLM requires."""
        if tp < 1:
            raise KairosError(f"tensor-parallel size must be at least 1, got {tp}")
        if self.num_heads % tp:
            raise KairosError(
                f"{self.name} has {self.num_heads} attention heads, not divisible by --tp {tp}"
            )
        kv = self.num_kv_heads
        if (kv % tp) if kv >= tp else (tp % kv):
            raise KairosError(
                f"{self.name} has {kv} KV heads: --tp {tp} must divide them or be a multiple of them"
            )

    @classmethod
    def from_hf_config(
        cls, config: dict[str, Any], name: str, hf_id: str = "", dtype_bytes: int = 2
    ) -> ModelArch:
        """Build from a Hugging Face config.json dict (Llama, Mistral, Qwen2/3, Mixtral, Qwen2/3-MoE).

        Not modelled: sliding-window attention (Mistral v0.1 is treated as full
        attention, which overestimates its KV use past 4096 tokens) and Qwen-MoE's
        `decoder_sparse_step`/`mlp_only_layers` (every released Qwen3-MoE model has an
        MoE block in every layer).
        """
        model_type = config.get("model_type")
        if model_type not in DENSE_MODEL_TYPES | MOE_MODEL_TYPES:
            supported = ", ".join(sorted(DENSE_MODEL_TYPES | MOE_MODEL_TYPES))
            raise KairosError(
                f"model '{name}' has unsupported model_type '{model_type}' (supported: {supported})"
            )

        def field(key: str) -> Any:
            if config.get(key) is None:
                raise KairosError(f"config of model '{name}' lacks '{key}'")
            return config[key]

        hidden = int(field("hidden_size"))
        heads = int(field("num_attention_heads"))
        moe: dict[str, int] = {}
        if model_type == "mixtral":
            # Mixtral's intermediate_size is the width of each expert.
            moe = dict(
                num_experts=int(field("num_local_experts")),
                experts_per_token=int(field("num_experts_per_tok")),
                moe_intermediate_size=int(field("intermediate_size")),
            )
        elif model_type in MOE_MODEL_TYPES:
            shared = int(config.get("shared_expert_intermediate_size") or 0)
            moe = dict(
                num_experts=int(field("num_experts")),
                experts_per_token=int(field("num_experts_per_tok")),
                moe_intermediate_size=int(field("moe_intermediate_size")),
                num_shared_experts=1 if shared else 0,
                shared_expert_intermediate_size=shared,
            )
        return cls(
            name=name,
            hidden_size=hidden,
            num_layers=int(field("num_hidden_layers")),
            num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            intermediate_size=int(field("intermediate_size")),
            vocab_size=int(field("vocab_size")),
            max_position_embeddings=int(field("max_position_embeddings")),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            dtype_bytes=dtype_bytes,
            hf_id=hf_id,
            **moe,
        )
