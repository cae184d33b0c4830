"""The paged KV pool tensor and how many blocks a memory budget buys."""

from __future__ import annotations

import torch

from kairos.serve.config import ModelConfig

MIB = 1 << 20
# A CPU has no dedicated memory to fill: a fixed default keeps small runs small.
DEFAULT_CPU_KV_BYTES = 256 * MIB
# Share of the GPU memory still free after loading the weights that the pool may take;
# the rest is left to activations, logits and the allocator's fragmentation.
GPU_FREE_MEMORY_FRACTION = 0.85


def kv_bytes_per_block(config: ModelConfig, block_size: int, dtype: torch.dtype) -> int:
    """K and V of every layer for `block_size` tokens."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return 2 * config.num_layers * block_size * config.kv_size * itemsize


def num_blocks_for_memory(config: ModelConfig, block_size: int, memory_bytes: int, dtype: torch.dtype) -> int:
    """Blocks that fit in `memory_bytes` (at least 1)."""
    return max(1, memory_bytes // kv_bytes_per_block(config, block_size, dtype))


def default_kv_memory(device: torch.device) -> int:
    """Bytes for the pool when none is asked for: 256 MiB on CPU, most of the free memory of a GPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * GPU_FREE_MEMORY_FRACTION)
    return DEFAULT_CPU_KV_BYTES


def allocate_kv_pool(config: ModelConfig, num_blocks: int, block_size: int, dtype: torch.dtype,
                     device: torch.device) -> torch.Tensor:
    """A [layers, 2, blocks, block_size, kv_heads, head_dim] pool.

    Zeroed, not empty: padded context slots are masked out of attention, but a
    masked NaN still poisons the weighted sum (0 * NaN), so the pool must start finite.
    """
    shape = (config.num_layers, 2, num_blocks, block_size, config.num_kv_heads, config.head_dim)
    return torch.zeros(shape, dtype=dtype, device=device)
