"""The shape of a runnable decoder-only transformer, read from and written to HF `config.json`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kairos.errors import KairosError

# Architectures whose weights and forward pass this executor implements (names from config.json).
SUPPORTED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2"})
_HF_ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a Llama/Qwen2-family model, named as in Hugging Face configs.

    `rope_scaling` holds the HF scaling dict (only `rope_type` "llama3" and "linear"
    change the frequencies; None means plain RoPE). Qwen2 puts biases on the q/k/v
    projections only (`qkv_bias`); Llama's `attention_bias` adds one to o_proj too.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    model_type: str = "llama"
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 4096
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    # The checkpoint's storage dtype: a loading default, not part of the architecture.
    torch_dtype: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise KairosError(f"num_attention_heads ({self.num_heads}) must be a multiple of "
                              f"num_key_value_heads ({self.num_kv_heads})")

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> ModelConfig:
        """Read a Hugging Face config dict (transformers v4 `rope_theta`/`rope_scaling` or v5 `rope_parameters`)."""
        model_type = hf.get("model_type", "llama")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise KairosError(f"unsupported model_type '{model_type}': the serve executor runs "
                              f"{', '.join(sorted(SUPPORTED_MODEL_TYPES))}")
        heads = hf["num_attention_heads"]
        rope_theta, rope_scaling = _read_rope(hf)
        attention_bias = bool(hf.get("attention_bias", False))
        eos = hf.get("eos_token_id")
        return cls(
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads,
            head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
            model_type=model_type,
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=rope_theta,
            rope_scaling=rope_scaling,
            # Qwen2 always has q/k/v biases and none on o_proj; its config does not say so.
            qkv_bias=attention_bias or model_type == "qwen2",
            o_bias=attention_bias,
            mlp_bias=bool(hf.get("mlp_bias", False)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            max_position_embeddings=hf.get("max_position_embeddings", 4096),
            bos_token_id=hf.get("bos_token_id"),
            # Llama 3 lists several end tokens; the engine stops on one, the first.
            eos_token_id=eos[0] if isinstance(eos, list) else eos,
            torch_dtype=hf.get("torch_dtype") or hf.get("dtype"),
        )

    def to_hf(self) -> dict[str, Any]:
        """A config.json that transformers (v4 or v5) loads as the same model."""
        if self.model_type == "qwen2" and self.o_bias:
            raise KairosError("qwen2 has no o_proj bias")
        if self.model_type != "qwen2" and self.qkv_bias != self.o_bias:
            raise KairosError(f"{self.model_type} biases q/k/v and o_proj together (attention_bias)")
        hf: dict[str, Any] = {
            "architectures": [_HF_ARCHITECTURES[self.model_type]],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": self.rope_scaling,
            "attention_bias": self.o_bias,
            "mlp_bias": self.mlp_bias,
            "tie_word_embeddings": self.tie_word_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
        }
        if self.torch_dtype is not None:
            hf["torch_dtype"] = self.torch_dtype
        return hf


def _read_rope(hf: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """RoPE base and scaling from either config generation; 'default' scaling means none."""
    params = hf.get("rope_parameters")
    if isinstance(params, dict) and "rope_theta" in params:
        theta = float(params["rope_theta"])
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    else:
        theta = float(hf.get("rope_theta", 10000.0))
        scaling = dict(hf["rope_scaling"]) if hf.get("rope_scaling") else {}
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type == "default":
        return theta, None
    if rope_type not in ("llama3", "linear"):
        raise KairosError(f"unsupported rope_scaling type '{rope_type}' (supported: llama3, linear)")
    scaling["rope_type"] = rope_type
    scaling.pop("type", None)
    return theta, scaling
