"""Build a runnable model: a named random-init preset, or a local Hugging Face model directory."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from kairos.errors import KairosError, unknown_name_error
from kairos.serve.config import ModelConfig
from kairos.serve.model import CausalLM
from kairos.serve.tokenizer import ByteTokenizer, HFTokenizer, Tokenizer
from kairos.serve.weights import load_hf_weights


def _preset(vocab: int, hidden: int, layers: int, heads: int, kv_heads: int) -> ModelConfig:
    # Intermediate size ~8/3 of hidden rounded up to 16, as in Llama; ids 256/257 are the byte tokenizer's specials.
    return ModelConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=-(-hidden * 8 // 3 // 16) * 16,
                       num_layers=layers, num_heads=heads, num_kv_heads=kv_heads, head_dim=hidden // heads,
                       bos_token_id=ByteTokenizer.bos_token_id, eos_token_id=ByteTokenizer.eos_token_id)


# Random-init Llama-architecture models for tests and benchmarks (no weights can be downloaded).
PRESETS: dict[str, ModelConfig] = {
    "tiny": _preset(vocab=512, hidden=64, layers=2, heads=4, kv_heads=2),
    "small": _preset(vocab=2048, hidden=256, layers=4, heads=8, kv_heads=4),
    "medium": _preset(vocab=4096, hidden=512, layers=8, heads=8, kv_heads=2),
}


@dataclass(frozen=True)
class ModelInfo:
    """A model's name, config, tokenizer and placement: all that serving needs of it but the weights."""

    name: str
    config: ModelConfig
    tokenizer: Tokenizer
    device: torch.device
    dtype: torch.dtype


@dataclass(frozen=True)
class LoadedModel(ModelInfo):
    """A model ready to run: weights on their device, with its config and tokenizer."""

    model: CausalLM


def describe_model(name_or_path: str | Path, device: str | torch.device = "cpu",
                   dtype: str | torch.dtype | None = None) -> ModelInfo:
    """What load_model would load, without loading weights: a preset name or a local HF model directory.

    dtype defaults to float32 on CPU and to the checkpoint's half type (else bfloat16) on GPU.
    """
    device = torch.device(device)
    if str(name_or_path) in PRESETS:
        config = PRESETS[str(name_or_path)]
        return ModelInfo(str(name_or_path), config, ByteTokenizer(), device, _resolve_dtype(dtype, config, device))
    path = Path(name_or_path)
    if not path.is_dir():
        raise unknown_name_error("model (preset or local directory)", str(name_or_path), PRESETS)
    config_file = path / "config.json"
    if not config_file.exists():
        raise KairosError(f"{path} has no config.json: not a Hugging Face model directory")
    config = ModelConfig.from_hf(json.loads(config_file.read_text()))
    return ModelInfo(str(path), config, _directory_tokenizer(path, config), device,
                     _resolve_dtype(dtype, config, device))


def load_model(name_or_path: str | Path, device: str | torch.device = "cpu",
               dtype: str | torch.dtype | None = None, seed: int = 0) -> LoadedModel:
    """A preset name from PRESETS (random weights drawn from `seed`) or a local HF model directory."""
    if str(name_or_path) in PRESETS:
        return random_model(PRESETS[str(name_or_path)], seed, device, dtype, name=str(name_or_path))
    info = describe_model(name_or_path, device, dtype)
    model = _empty_model(info.config, info.device, info.dtype)
    load_hf_weights(model, Path(info.name))
    return LoadedModel(info.name, info.config, info.tokenizer, info.device, info.dtype, model.eval())


def random_model(config: ModelConfig, seed: int = 0, device: str | torch.device = "cpu",
                 dtype: str | torch.dtype | None = None, name: str = "random") -> LoadedModel:
    """A model of any config with seeded random weights and the byte tokenizer (vocab_size must exceed 257)."""
    if config.vocab_size <= ByteTokenizer.eos_token_id:
        raise KairosError(f"vocab_size {config.vocab_size} is too small for the byte tokenizer (needs 258)")
    device = torch.device(device)
    dtype = _resolve_dtype(dtype, config, device)
    model = _empty_model(config, device, dtype)
    init_random_weights(model, seed)
    return LoadedModel(name, config, ByteTokenizer(), device, dtype, model.eval())


def _resolve_dtype(dtype: str | torch.dtype | None, config: ModelConfig, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        if device.type == "cpu":
            return torch.float32
        return torch.float16 if config.torch_dtype == "float16" else torch.bfloat16
    resolved = getattr(torch, dtype, None)
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise KairosError(f"unknown dtype '{dtype}': use float32, bfloat16 or float16")
    return resolved


def _empty_model(config: ModelConfig, device: torch.device, dtype: torch.dtype) -> CausalLM:
    # Built on the meta device, then given uninitialised storage once, in the final dtype:
    # a checkpoint is never held twice and a GPU model never passes through CPU memory.
    with torch.device("meta"):
        model = CausalLM(config)
    return model.to(dtype=dtype).to_empty(device=device)


def init_random_weights(model: CausalLM, seed: int) -> None:
    """Seeded random weights, drawn on CPU in float32 so every device and dtype gets the same model.

    Scales keep activations O(1) through the layers and give logits a spread of a
    few units, so greedy decoding has clear winners (ties would make reference
    comparisons flaky) and attention really depends on the context.
    """
    gen = torch.Generator().manual_seed(seed)
    hidden = model.config.hidden_size
    for name, param in model.named_parameters():
        shape = tuple(param.shape)
        if name.endswith("norm.weight"):
            value = 1 + 0.1 * torch.randn(shape, generator=gen)
        elif name.endswith("bias"):
            value = 0.1 * torch.randn(shape, generator=gen)
        elif name == "model.embed_tokens.weight":
            value = torch.randn(shape, generator=gen)
        elif name == "lm_head.weight":
            value = torch.randn(shape, generator=gen) * (4 / math.sqrt(hidden))
        else:
            value = torch.randn(shape, generator=gen) / math.sqrt(shape[1])
        with torch.no_grad():
            param.copy_(value)


def _directory_tokenizer(path: Path, config: ModelConfig) -> Tokenizer:
    file = path / "tokenizer.json"
    if not file.exists():
        raise KairosError(f"{path} has no tokenizer.json")
    return HFTokenizer(file, config.bos_token_id, config.eos_token_id)
