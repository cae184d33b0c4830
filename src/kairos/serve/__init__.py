"""Real serving: a PyTorch executor with a paged KV cache, driven by the engine core.

Needs the `engine` extra (torch, safetensors, tokenizers). Names are imported
lazily so that `import kairos.serve` works, and can report the missing extra,
where torch is not installed.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EngineRunner": "kairos.serve.runner",
    "RunnerConfig": "kairos.serve.runner",
    "TorchExecutor": "kairos.serve.executor",
    "SamplingParams": "kairos.serve.sampler",
    "Sampler": "kairos.serve.sampler",
    "LoadedModel": "kairos.serve.loader",
    "load_model": "kairos.serve.loader",
    "PRESETS": "kairos.serve.loader",
    "ModelConfig": "kairos.serve.config",
    "CausalLM": "kairos.serve.model",
    "save_hf_checkpoint": "kairos.serve.weights",
    "num_blocks_for_memory": "kairos.serve.kv_pool",
    "ByteTokenizer": "kairos.serve.tokenizer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kairos.serve' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)
