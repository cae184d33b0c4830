"""Hugging Face safetensors checkpoints <-> CausalLM parameters (fused projections split and joined here)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch

from kairos.errors import KairosError
from kairos.serve.model import CausalLM
from kairos.serve.tokenizer import Tokenizer

# HF projection name -> (our fused module, shard index in it).
_FUSED = {
    "q_proj": ("qkv_proj", 0), "k_proj": ("qkv_proj", 1), "v_proj": ("qkv_proj", 2),
    "gate_proj": ("gate_up_proj", 0), "up_proj": ("gate_up_proj", 1),
}
_SPLIT = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}
# Checkpoint entries that are not parameters of the model (old RoPE caches).
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
INDEX_FILE = "model.safetensors.index.json"


def _shard_sizes(model: CausalLM, fused: str) -> tuple[int, ...]:
    c = model.config
    return (c.q_size, c.kv_size, c.kv_size) if fused == "qkv_proj" else (c.intermediate_size,) * 2


def _checkpoint_files(directory: Path) -> list[Path]:
    index = directory / INDEX_FILE
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [directory / f for f in sorted(set(weight_map.values()))]
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise KairosError(f"no *.safetensors weights in {directory}")
    return files


def load_hf_weights(model: CausalLM, directory: Path) -> None:
    """Copy every tensor of a (possibly sharded) HF checkpoint into `model`, casting to its dtype.

    Fails naming the first parameter no file provided, or the first unknown tensor.
    """
    from safetensors import safe_open

    params = dict(model.named_parameters())
    expected: set[tuple[str, int | None]] = set()
    for name in params:
        module = _split_name(name)[1]
        expected |= {(name, i) for i in range(len(_SPLIT[module]))} if module in _SPLIT else {(name, None)}
    loaded: set[tuple[str, int | None]] = set()
    for path in _checkpoint_files(directory):
        with safe_open(str(path), framework="pt") as f:
            for hf_name in f.keys():
                if hf_name.endswith(_IGNORED_SUFFIXES):
                    continue
                if hf_name == "lm_head.weight" and model.lm_head is None:
                    continue  # tied: the embedding is the head (some checkpoints store both)
                name, shard = _our_name(hf_name)
                param = params.get(name)
                if param is None:
                    raise KairosError(f"unexpected weight '{hf_name}' in {path.name}")
                target = param.data
                if shard is not None:
                    sizes = _shard_sizes(model, _split_name(name)[1])
                    target = target.narrow(0, sum(sizes[:shard]), sizes[shard])
                tensor = f.get_tensor(hf_name)
                if tuple(tensor.shape) != tuple(target.shape):
                    raise KairosError(f"weight '{hf_name}' has shape {tuple(tensor.shape)}, "
                                      f"the config implies {tuple(target.shape)}")
                target.copy_(tensor)
                loaded.add((name, shard))
    missing = sorted(expected - loaded, key=str)
    if missing:
        raise KairosError(f"checkpoint in {directory} has no weight for '{missing[0][0]}'")


def _split_name(name: str) -> tuple[str, str, str]:
    """'model.layers.0.mlp.up_proj.weight' -> ('model.layers.0.mlp', 'up_proj', 'weight')."""
    parts = name.rsplit(".", 2)
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else ("", parts[0], parts[-1])


def _our_name(hf_name: str) -> tuple[str, int | None]:
    prefix, module, leaf = _split_name(hf_name)
    if module in _FUSED:
        fused, shard = _FUSED[module]
        return f"{prefix}.{fused}.{leaf}", shard
    return hf_name, None


def hf_state_dict(model: CausalLM) -> Iterator[tuple[str, torch.Tensor]]:
    """The model's parameters under HF names, fused projections split back into their parts."""
    for name, param in model.named_parameters():
        prefix, module, leaf = _split_name(name)
        if module in _SPLIT:
            parts = param.detach().split(_shard_sizes(model, module), dim=0)
            for hf_module, part in zip(_SPLIT[module], parts):
                yield f"{prefix}.{hf_module}.{leaf}", part
        else:
            yield name, param.detach()


def save_hf_checkpoint(model: CausalLM, directory: Path, tokenizer: Tokenizer | None = None,
                       max_shard_bytes: int | None = None) -> None:
    """Write config.json, safetensors (and tokenizer.json) that transformers and `load_model` load as the same model.

    With `max_shard_bytes`, weights are split over several files plus an index, as
    large checkpoints are.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config.to_hf()
    config["torch_dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    if tokenizer is not None:
        tokenizer.save(directory)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in hf_state_dict(model):
        nbytes = tensor.numel() * tensor.element_size()
        if max_shard_bytes is not None and shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor.contiguous().cpu()
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(directory / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(directory / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
    (directory / INDEX_FILE).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2))
