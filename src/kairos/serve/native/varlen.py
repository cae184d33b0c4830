"""Varlen attention metadata and the native kernels' calls: each request attends to exactly its context.

Unlike the padded SDPA path (kairos.serve.attention), nothing is gathered or
padded: the kernel walks each request's block table in the pool, so a step
costs what its requests' contexts cost. The pool keeps K transposed per block
(`allocate_native_pool`), which only these kernels read.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from kairos.serve.config import ModelConfig
from kairos.serve.cpu_tuning import advise_huge_pages
from kairos.serve.native.build import NativeKernels


@dataclass(frozen=True, slots=True)
class VarlenMetadata:
    """One step's requests for the native kernels, shared by all layers."""

    positions: torch.Tensor  # [T] absolute position of each new token (RoPE)
    seqs: torch.Tensor  # [B, 3] int32: first row in the batch, new tokens, tokens cached before
    tables: torch.Tensor  # [B, W] int32 block tables, zero-padded
    block_size: int
    num_tokens: int
    kernels: NativeKernels

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv_layer: torch.Tensor, scale: float,
               cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate q [T, heads, head_dim] and k [T, kv_heads, head_dim] by cos/sin [T, head_dim], store k and v
        in the pool, then attend q; returns [T, heads * head_dim].

        Rows may be strided (slices of a fused projection); heads must be contiguous.
        All writes precede all reads: a request may read blocks that another one in the
        same step is filling (a prefix-cache hit on a prompt being prefilled).
        """
        num_tokens, heads, dim = q.shape
        kv_heads = k.shape[1]
        if any(t.stride()[1:] != (dim, 1) for t in (q, k, v)):
            raise ValueError("q, k and v need contiguous heads (rows may be strided)")
        cos, sin = cos.contiguous(), sin.contiguous()
        out = q.new_empty(num_tokens, heads * dim)
        num_seqs, width = self.tables.shape
        seqs, tables = self.seqs.data_ptr(), self.tables.data_ptr()
        k_pool, v_pool = kv_layer[0].data_ptr(), kv_layer[1].data_ptr()
        self.kernels.write_kv(k.data_ptr(), v.data_ptr(), k.stride(0), v.stride(0), cos.data_ptr(), sin.data_ptr(),
                              seqs, num_seqs, tables, width, k_pool, v_pool, kv_heads, dim, self.block_size)
        status = self.kernels.paged_attention(q.data_ptr(), q.stride(0), cos.data_ptr(), sin.data_ptr(),
                                              out.data_ptr(), k_pool, v_pool, seqs, num_seqs, tables, width, heads,
                                              kv_heads, dim, self.block_size, scale)
        if status != 0:
            raise ValueError(f"the native attention kernel does not support heads={heads}, kv_heads={kv_heads}, "
                             f"head_dim={dim}")
        return out


def build_varlen_metadata(starts: list[int], lens: list[int], tables: list[list[int]], block_size: int,
                          kernels: NativeKernels) -> VarlenMetadata:
    """Metadata for requests computing tokens [starts[i], starts[i] + lens[i]) over block tables `tables[i]`."""
    num_seqs = len(starts)
    start = np.asarray(starts, dtype=np.int64)
    count = np.asarray(lens, dtype=np.int64)
    row0 = np.cumsum(count) - count
    num_tokens = int(count.sum())
    positions = np.arange(num_tokens, dtype=np.int64) + np.repeat(start - row0, count)
    seqs = np.stack((row0, count, start), axis=1).astype(np.int32)
    widths = np.fromiter(map(len, tables), dtype=np.int64, count=num_seqs)
    table = np.zeros((num_seqs, max(1, int(widths.max()))), dtype=np.int32)
    table[np.arange(table.shape[1])[None, :] < widths[:, None]] = np.fromiter(
        itertools.chain.from_iterable(tables), dtype=np.int32, count=int(widths.sum()))
    return VarlenMetadata(torch.from_numpy(positions), torch.from_numpy(seqs), torch.from_numpy(table),
                          block_size, num_tokens, kernels)


def allocate_native_pool(config: ModelConfig, num_blocks: int, block_size: int) -> torch.Tensor:
    """A float32 [layers, 2, blocks, kv_heads, block_size * head_dim] pool: K blocks [head_dim, block_size], V [block_size, head_dim].

    Zeroed (every score the kernel computes is finite) and, where the kernel
    supports it, backed by transparent huge pages: a step reads scattered blocks
    of a large pool, and 4 KiB pages would cost a TLB miss per block.
    """
    shape = (config.num_layers, 2, num_blocks, config.num_kv_heads, block_size * config.head_dim)
    pool = torch.empty(shape, dtype=torch.float32)
    advise_huge_pages(pool)
    return pool.zero_()
