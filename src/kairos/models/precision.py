"""Weight and KV-cache precisions: accepted names, stored bits per weight, checkpoint quantization configs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from kairos.errors import KairosError

# fp8_block: fp8 with one scale per 128x128 block (DeepSeek-V3, Qwen3 -FP8 checkpoints),
# which runs on other kernels than per-tensor or per-channel fp8.
WEIGHTS_DTYPES = ("bf16", "fp16", "fp8", "fp8_block", "nvfp4", "mxfp4", "int4")
KV_CACHE_DTYPES = ("auto", "bf16", "fp16", "fp8")
# Which linear layers a quantized checkpoint stores in its weights dtype:
# every one ("linear"), all but attention ("mlp"), or only the routed experts ("experts").
QUANT_SCOPES = ("linear", "mlp", "experts")
UNQUANTIZED = frozenset({"bf16", "fp16"})
# AWQ's and GPTQ's usual group size: one scale per 128 weights.
INT4_GROUP_SIZE = 128

SUPPORTED_QUANT_METHODS = (
    "fp8, mxfp4, awq and gptq (4-bit), compressed-tensors (fp8, nvfp4, mxfp4, int4), modelopt (FP8, NVFP4)"
)


def check_weights_dtype(name: str) -> str:
    """The canonical (lower-case) weights dtype, or a KairosError listing the accepted ones."""
    canonical = name.lower()
    if canonical not in WEIGHTS_DTYPES:
        raise KairosError(f"unknown weights dtype '{name}' (accepted: {', '.join(WEIGHTS_DTYPES)})")
    return canonical


def check_kv_cache_dtype(name: str) -> str:
    """The canonical (lower-case) KV-cache dtype, or a KairosError listing the accepted ones."""
    canonical = name.lower()
    if canonical not in KV_CACHE_DTYPES:
        raise KairosError(f"unknown KV-cache dtype '{name}' (accepted: {', '.join(KV_CACHE_DTYPES)})")
    return canonical


def bits_per_weight(dtype: str, int4_group_size: int = INT4_GROUP_SIZE) -> Fraction:
    """Stored bits per weight of a linear layer in `dtype`, block scales included.

    nvfp4 keeps one fp8 (E4M3) scale per 16 weights, mxfp4 one 8-bit (E8M0) scale per
    32, int4 weight-only (AWQ, GPTQ) one bf16 scale per group (none counted for
    per-channel groups, `int4_group_size` 0). fp8's per-tensor, per-channel or 128x128
    block scales are under 0.1% of the weights and left out.
    """
    if dtype in UNQUANTIZED:
        return Fraction(16)
    if dtype in ("fp8", "fp8_block"):
        return Fraction(8)
    if dtype == "nvfp4":
        return Fraction(4) + Fraction(8, 16)
    if dtype == "mxfp4":
        return Fraction(4) + Fraction(8, 32)
    if dtype == "int4":
        return Fraction(4) + (Fraction(16, int4_group_size) if int4_group_size > 0 else 0)
    raise KairosError(f"unknown weights dtype '{dtype}' (accepted: {', '.join(WEIGHTS_DTYPES)})")


@dataclass(frozen=True, slots=True)
class Quantization:
    """How a checkpoint's `quantization_config` stores its linear layers."""

    weights_dtype: str
    quant_scope: str
    int4_group_size: int


def quantization_from_config(config: dict[str, Any], model: str) -> Quantization:
    """Map a Hugging Face `quantization_config` to a weights dtype; KairosError for what cannot be mapped."""
    method = str(config.get("quant_method") or ("modelopt" if "quant_algo" in config else "")).lower()
    group_size = INT4_GROUP_SIZE
    if method == "fp8":
        dtype = "fp8_block" if config.get("weight_block_size") else "fp8"
    elif method == "mxfp4":
        dtype = "mxfp4"
    elif method in ("awq", "gptq"):
        bits = int(config.get("bits") or config.get("w_bit") or 4)
        if bits != 4:
            raise KairosError(f"model '{model}' uses {bits}-bit {method} quantization, which Kairos cannot size "
                              f"(supported: {SUPPORTED_QUANT_METHODS})")
        # GPTQ's group_size -1 means per-channel scales.
        dtype = "int4"
        group_size = int(config.get("group_size") or config.get("q_group_size") or INT4_GROUP_SIZE)
    elif method == "compressed-tensors":
        dtype, group_size = _compressed_tensors(config, model)
    elif method == "modelopt":
        dtype = _modelopt(config, model)
    else:
        raise KairosError(f"model '{model}' uses quantization '{method or 'without quant_method'}', which Kairos "
                          f"cannot size (supported: {SUPPORTED_QUANT_METHODS})")
    return Quantization(dtype, _scope(config), max(group_size, 0))


def _compressed_tensors(config: dict[str, Any], model: str) -> tuple[str, int]:
    """(weights dtype, int4 group size) from the first config group that quantizes weights.

    The group size matters for int4 only (nvfp4's and mxfp4's are fixed by the format).
    """
    groups = [g for g in (config.get("config_groups") or {}).values() if isinstance(g, dict) and g.get("weights")]
    if not groups:
        raise KairosError(f"model '{model}' uses compressed-tensors quantization without weight config_groups")
    weights = groups[0]["weights"]
    fmt = str(groups[0].get("format") or config.get("format") or "")
    bits, kind = weights.get("num_bits"), weights.get("type")
    group_size = int(weights.get("group_size") or 0)
    if "nvfp4" in fmt or (bits, kind, group_size) == (4, "float", 16):
        return "nvfp4", INT4_GROUP_SIZE
    if "mxfp4" in fmt or (bits, kind, group_size) == (4, "float", 32):
        return "mxfp4", INT4_GROUP_SIZE
    if (bits, kind) == (8, "float"):
        return ("fp8_block" if weights.get("strategy") == "block" else "fp8"), INT4_GROUP_SIZE
    if (bits, kind) == (4, "int"):
        # A per-channel strategy has no group size: its scales are negligible.
        return "int4", group_size
    raise KairosError(f"model '{model}' uses compressed-tensors quantization with {bits}-bit {kind} weights "
                      f"(format '{fmt}'), which Kairos cannot size (supported: {SUPPORTED_QUANT_METHODS})")


def _modelopt(config: dict[str, Any], model: str) -> str:
    algo = str(config.get("quant_algo") or "").upper()
    if algo == "FP8":
        return "fp8"
    if algo in ("NVFP4", "W4A16_NVFP4"):
        return "nvfp4"
    raise KairosError(f"model '{model}' uses modelopt quantization '{algo}', which Kairos cannot size "
                      f"(supported: {SUPPORTED_QUANT_METHODS})")


# An excluded module name that covers attention projections: a whole attention block
# ("model.layers.*.self_attn", "re:.*self_attn.*", "*.attn.*") or one of its *_proj
# linears, but not a norm or indexer inside it.
_ATTENTION = re.compile(r"attn(\*|\.\*|$|\.\w*proj)")


def _scope(config: dict[str, Any]) -> str:
    """Which linear layers the checkpoint quantizes, from the modules it leaves out.

    Per-layer exclusion lists are read as applying to every layer: checkpoints that
    keep attention in 16 bits keep it so in all (or nearly all) layers. A checkpoint
    that also keeps the shared experts in 16 bits (Kimi-K2.5) keeps its dense MLP
    layers so too: only the routed experts are quantized.
    """
    excluded = [
        str(module)
        for key in ("ignore", "modules_to_not_convert", "exclude_modules")
        for module in (config.get(key) or [])
    ]
    if not any(_ATTENTION.search(module) for module in excluded):
        return "linear"
    if any("shared_expert" in module for module in excluded):
        return "experts"
    return "mlp"
