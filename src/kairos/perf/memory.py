"""GPU memory sizing: how many KV-cache blocks fit next to the weights, as vLLM sizes them.

Per GPU:

    budget  = gpu_memory_utilization * memory_bytes
    reserve = RUNTIME_OVERHEAD_BYTES
              + max_num_batched_tokens * activation bytes per token
              + sampler buffers for min(max_num_seqs, max_num_batched_tokens) rows
    weights = (weight_bytes - routed expert bytes) / tp + routed expert bytes / (tp * dp)
    blocks  = floor((budget - weights - reserve)
                    / (block_size * kv_bytes_per_token_per_gpu(tp)))

An MoE model's routed experts are spread over all tp x dp GPUs of a replica
(expert-parallel or tensor-sharded alike); everything else is sharded by tp and
copied on each data-parallel rank. The blocks are those of one engine (one
data-parallel rank).

vLLM measures the reserve by profiling a forward pass of max_num_batched_tokens
tokens and a sampler pass of max_num_seqs rows; this module estimates the same peaks
from the model shape.
"""

from __future__ import annotations

import math

from kairos.errors import KairosError
from kairos.hardware import GPU
from kairos.models import ModelArch
from kairos.perf.parallel import Parallelism

GIB = 1 << 30

# Memory on each GPU that neither weights, activations nor KV may use:
# - about 0.5 GiB that the driver keeps out of the total CUDA reports (the RTX 4090
#   in the shared vLLM 0.19 run reports 25,250,627,584 bytes of its 24 GiB);
# - about 0.5 GiB that vLLM counts as non-torch memory: the CUDA context, cuBLAS and
#   NCCL workspaces, and the CUDA-graph memory pool.
RUNTIME_OVERHEAD_BYTES = 1 * GIB

# vLLM's sampler holds fp32 logits and the probabilities derived from them.
SAMPLER_FP32_COPIES = 2
FP32_BYTES = 4

# Tensor-parallel sizes tried, above the one asked for, when suggesting a --tp that fits.
TP_CANDIDATES = (2, 4, 8, 16, 32, 64)


def activation_bytes_per_token(model: ModelArch, tp: int) -> int:
    """Peak live activation bytes per batched token on one GPU during a forward pass.

    The residual stream and the normed hidden state (2 * hidden) stay live while the
    widest block runs: attention (Q, K, V and the attention output) or the MLP (the
    gate_up output of 2 * intermediate and the activated intermediate; for MoE, per
    routed copy of the token, plus the expert outputs and any shared expert).
    """
    h = model.hidden_size
    q = model.num_heads // tp * model.head_dim
    kv = model.kv_heads_per_gpu(tp) * model.head_dim
    attention_width = 2 * q + 2 * kv
    if model.is_moe:
        expert_width = model.moe_intermediate_size / tp
        shared_width = model.num_shared_experts * model.shared_expert_intermediate_size / tp
        mlp_width = model.experts_per_token * (3 * expert_width + h) + 3 * shared_width
    else:
        mlp_width = 3 * model.intermediate_size / tp
    return math.ceil((2 * h + max(attention_width, mlp_width)) * model.dtype_bytes)


def reserved_bytes(model: ModelArch, tp: int, max_num_batched_tokens: int, max_num_seqs: int = 256) -> int:
    """Bytes per GPU held back from the KV cache: runtime overhead, activations, sampler."""
    activations = max_num_batched_tokens * activation_bytes_per_token(model, tp)
    sampler_rows = min(max_num_seqs, max_num_batched_tokens)
    sampler = sampler_rows * model.vocab_size * FP32_BYTES * SAMPLER_FP32_COPIES
    return RUNTIME_OVERHEAD_BYTES + activations + sampler


def kv_cache_blocks(
    model: ModelArch,
    gpu: GPU,
    tp: int,
    block_size: int,
    gpu_memory_utilization: float,
    max_num_batched_tokens: int,
    max_num_seqs: int = 256,
    parallel: Parallelism | None = None,
) -> int:
    """KV-cache blocks of `block_size` tokens that fit on each GPU (see the module formula).

    `parallel` adds data and expert parallelism to `tp` (the experts' share of the
    weights is spread wider). Raises KairosError naming the GiB missing per GPU and
    the smallest --tp that fits when not even one block fits.
    """
    dp = parallel.dp if parallel is not None else 1
    if not 0 < gpu_memory_utilization <= 1:
        raise KairosError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    if block_size < 1 or max_num_batched_tokens < 1 or max_num_seqs < 1:
        raise KairosError("block_size, max_num_batched_tokens and max_num_seqs must be positive")
    sizing = (block_size, gpu_memory_utilization, max_num_batched_tokens, max_num_seqs, dp)
    blocks, shortfall = _fit(model, gpu, tp, *sizing)
    if blocks > 0:
        return blocks
    fitting_tp = next(
        (c for c in TP_CANDIDATES if c > tp and _splits(model, c) and _fit(model, gpu, c, *sizing)[0] > 0),
        None,
    )
    hint = f"try --tp {fitting_tp}" if fitting_tp else f"no tensor-parallel size up to {TP_CANDIDATES[-1]} fits"
    weights = weight_bytes_per_gpu(model, tp, dp) / GIB
    reserve = reserved_bytes(model, tp, max_num_batched_tokens, max_num_seqs) / GIB
    offered = gpu_memory_utilization * gpu.memory_bytes / GIB
    where = "one" if tp * dp == 1 else f"each of {tp * dp}"
    raise KairosError(
        f"{model.name} needs {weights:.1f} GiB of weights and {reserve:.1f} GiB of runtime and "
        f"activations per GPU but {where} {gpu.name} offers {offered:.1f} GiB at "
        f"gpu_memory_utilization {gpu_memory_utilization}: {shortfall / GIB:.1f} GiB missing per GPU; {hint}"
    )


def _fit(
    model: ModelArch,
    gpu: GPU,
    tp: int,
    block_size: int,
    utilization: float,
    max_num_batched_tokens: int,
    max_num_seqs: int,
    dp: int = 1,
) -> tuple[int, float]:
    """(blocks that fit per GPU, bytes per GPU missing for the first block when none does)."""
    free = (
        utilization * gpu.memory_bytes
        - weight_bytes_per_gpu(model, tp, dp)
        - reserved_bytes(model, tp, max_num_batched_tokens, max_num_seqs)
    )
    block_bytes = block_size * model.kv_bytes_per_token_per_gpu(tp)
    if free < block_bytes:
        return 0, block_bytes - free
    return math.floor(free / block_bytes), 0.0


def weight_bytes_per_gpu(model: ModelArch, tp: int, dp: int = 1) -> float:
    """Weight bytes on each GPU of a replica of tp x dp GPUs (routed experts spread over all)."""
    experts = model.routed_expert_bytes
    return (model.weight_bytes - experts) / tp + experts / (tp * dp)


def _splits(model: ModelArch, tp: int) -> bool:
    try:
        model.check_tp(tp)
    except KairosError:
        return False
    return True
