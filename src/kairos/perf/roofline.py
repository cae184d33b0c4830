"""Roofline step-time model: each operator costs max(compute time, memory time).

All layers are identical, so one layer is costed and multiplied by the layer count;
every per-layer constant is folded into coefficients in `__init__`, which keeps
`step_time` to a few dozen float operations (it runs ~100k times per simulation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kairos.engine.batch_shape import BatchShape
from kairos.hardware import GPU
from kairos.models import ModelArch
from kairos.models.precision import bits_per_weight
from kairos.perf.base import ComposedStepModel


@dataclass(frozen=True, slots=True)
class RooflineParams:
    """Fractions of datasheet peaks that real kernels reach, and fixed costs.

    They cover GPU time only; host time per step is `kairos.perf.overheads`.
    """

    # cuBLAS/CUTLASS bf16 GEMMs at serving shapes reach roughly 70% of dense peak
    # (about 700 of 989 TFLOP/s on H100 for large square GEMMs; skinny ones do worse).
    gemm_efficiency: float = 0.7
    # FlashAttention-2 forward reaches 50-73% of peak on A100 (Dao, 2023, "FlashAttention-2",
    # section 4.1); take the low end since serving mixes short chunks and ragged batches.
    attention_efficiency: float = 0.5
    # Streaming kernels (GEMV at decode, paged KV reads) sustain about 80% of datasheet
    # HBM/GDDR bandwidth; STREAM-style copies top out near 90%.
    memory_efficiency: float = 0.8
    # nccl-tests all_reduce_perf bus bandwidth is about 80% of the NVLink link rate at
    # large messages.
    allreduce_efficiency: float = 0.8
    # vLLM's custom one-shot all-reduce takes about 5-10 us per call at decode-sized
    # messages on NVLink (its PR #2192 benchmarks); NCCL over PCIe is slower.
    allreduce_latency_s: float = 10e-6


@dataclass(frozen=True, slots=True)
class _LinearOp:
    """An operator whose FLOPs and activation bytes grow linearly with the token count.

    Time for T tokens is max(flop_s * T, weight_s + act_s * T) seconds, all layers included.
    """

    name: str
    flop_s: float
    weight_s: float
    act_s: float


class RooflineModel(ComposedStepModel):
    """Step time from per-operator rooflines for `model` on `tp` GPUs of kind `gpu`.

    Weights, attention heads and KV heads are divided over the `tp` ranks (all
    ranks run in lockstep, so one rank's time is the step time); tensor parallelism
    adds two all-reduces per layer plus one after the vocab-parallel embedding.
    """

    name = "roofline"

    def __init__(
        self, model: ModelArch, gpu: GPU, tp: int = 1, params: RooflineParams = RooflineParams()
    ) -> None:
        model.check_tp(tp)
        self.model = model
        self.gpu = gpu
        self.tp = tp
        self.params = params

        # FP8 weights run their GEMMs on the FP8 tensor cores where the GPU has them (W8A8);
        # 4-bit weights are read at their stored size and, costed conservatively, computed
        # at the 16-bit peak (weight-only kernels dequantize to 16 bits).
        fp8 = model.weights_dtype in ("fp8", "fp8_block") and gpu.fp8_flops
        gemm_s = 1.0 / ((gpu.fp8_flops if fp8 else gpu.bf16_flops) * params.gemm_efficiency)
        attn_s = 1.0 / (gpu.bf16_flops * params.attention_efficiency)
        byte_s = 1.0 / (gpu.memory_bw * params.memory_efficiency)
        layers = model.num_layers
        d = model.dtype_bytes
        quantized = float(bits_per_weight(model.weights_dtype, model.int4_group_size)) / 8
        # Bytes per weight of the attention projections, the dense or shared MLPs, and the experts.
        w_attn = quantized if model.quant_scope == "linear" else d
        w_mlp = quantized if model.quant_scope in ("linear", "mlp") else d
        h = model.hidden_size
        q = model.num_heads // tp * model.head_dim
        kv = model.kv_heads_per_gpu(tp) * model.head_dim

        def gemm(name: str, weights: float, act_per_token: float, count: int = layers,
                 weight_bytes: float = d) -> _LinearOp:
            """A GEMM with `weights` elements per GPU, reading+writing `act_per_token` elements."""
            return _LinearOp(
                name, 2 * weights * count * gemm_s, weights * weight_bytes * count * byte_s,
                act_per_token * d * count * byte_s,
            )

        def streaming(name: str, bytes_per_token: float) -> _LinearOp:
            return _LinearOp(name, 0.0, 0.0, bytes_per_token * byte_s)

        ops = [
            streaming("embedding", 2 * h * d),
            gemm("qkv_proj", h * (q + 2 * kv), h + q + 2 * kv, weight_bytes=w_attn),
            gemm("o_proj", q * h, q + h, weight_bytes=w_attn),
        ]
        if model.is_moe:
            # The router is replicated on every rank; its logits are fp32 (2 bf16 widths).
            ops.append(gemm("moe_router", h * model.num_experts, h + 2 * model.num_experts))
            if model.num_shared_experts:
                width = model.num_shared_experts * model.shared_expert_intermediate_size / tp
                ops.append(gemm("shared_experts", 3 * h * width, 2 * h + 6 * width, weight_bytes=w_mlp))
        else:
            width = model.intermediate_size / tp
            # gate_up reads h and writes 2i, SiLU-and-mul reads 2i and writes i, down reads i writes h.
            ops.append(gemm("mlp", 3 * h * width, 2 * h + 6 * width, weight_bytes=w_mlp))
        # Two fused residual-add + RMSNorm per layer (each reads and writes x and the
        # residual) plus the final norm; replicated, not split by TP.
        ops.append(streaming("norms", (8 * h * layers + 4 * h) * d))
        self._ops: tuple[_LinearOp, ...] = tuple(ops)

        if model.is_moe:
            k, experts = model.experts_per_token, model.num_experts
            width = model.moe_intermediate_size / tp
            self._expert_flop_s = 2 * k * 3 * h * width * layers * gemm_s
            self._expert_weight_s = 3 * h * width * quantized * layers * byte_s
            self._expert_act_s = k * (2 * h + 6 * width) * d * layers * byte_s
            self._experts = experts
            self._expert_miss = 1.0 - k / experts

        # Sampled tokens only: lm_head GEMM over this rank's vocab slice with fp32 logits.
        vocab = model.vocab_size / tp
        self._lm_head = gemm("lm_head", h * vocab, h + 2 * vocab, count=1)

        # Attention: FLOPs 4 * q * (query, key) pairs; bytes: K and V of every attended
        # token once, plus per new token its K/V write, Q read and output write.
        self._attn_pair_s = 4 * q * layers * attn_s
        self._attn_kv_s = 2 * kv * model.kv_dtype_bytes * layers * byte_s
        self._attn_new_s = (2 * kv + 2 * q) * d * layers * byte_s

        self._allreduce_fixed_s = 0.0
        self._allreduce_token_s = 0.0
        self._gather_fixed_s = 0.0
        self._gather_token_s = 0.0
        if tp > 1:
            calls = 2 * layers + 1
            link = gpu.interconnect_bw * params.allreduce_efficiency
            ring = 2 * (tp - 1) / tp  # each rank sends and receives this share of the buffer
            self._allreduce_fixed_s = calls * params.allreduce_latency_s
            self._allreduce_token_s = calls * ring * h * d / link
            # Logits are gathered from the vocab shards before sampling.
            self._gather_fixed_s = params.allreduce_latency_s
            self._gather_token_s = (tp - 1) / tp * model.vocab_size * d / link

    # ---- explanation ---------------------------------------------------------------

    def breakdown(self, shape: BatchShape) -> dict[str, float]:
        """Seconds per operator for one step (all layers); the values sum to step_time."""
        tokens, sampled = shape.num_tokens, shape.num_sampled
        times = {op.name: max(op.flop_s * tokens, op.weight_s + op.act_s * tokens) for op in self._ops}
        times.update(self._attention_breakdown(shape))
        if self.model.is_moe:
            times["moe_experts"] = self._experts_time(tokens)
        times["lm_head"] = self._lm_head_time(sampled)
        times["tp_comm"] = self._comm_time(tokens, sampled)
        return times

    # ---- terms -----------------------------------------------------------------------

    def _base_time(self, tokens: int, sampled: int) -> float:
        """Everything but attention: it depends only on the token and sampled counts."""
        t = 0.0
        for op in self._ops:
            t += max(op.flop_s * tokens, op.weight_s + op.act_s * tokens)
        if self.model.is_moe:
            t += self._experts_time(tokens)
        return t + self._lm_head_time(sampled) + self._comm_time(tokens, sampled)

    def _experts_time(self, tokens: int) -> float:
        # Weights are read once per distinct expert: T tokens each picking k of E experts
        # touch E * (1 - (1 - k/E)^T) of them on average (uniform routing).
        touched = self._experts * (1.0 - self._expert_miss**tokens)
        return max(
            self._expert_flop_s * tokens, self._expert_weight_s * touched + self._expert_act_s * tokens
        )

    def _lm_head_time(self, sampled: int) -> float:
        if not sampled:
            return 0.0
        op = self._lm_head
        return max(op.flop_s * sampled, op.weight_s + op.act_s * sampled)

    def _comm_time(self, tokens: int, sampled: int) -> float:
        if self.tp == 1:
            return 0.0
        t = self._allreduce_fixed_s + self._allreduce_token_s * tokens
        if sampled:
            t += self._gather_fixed_s + self._gather_token_s * sampled
        return t

    def _prefill_attention(self, new: int, ctx: int) -> float:
        """A chunk of `new` causal query tokens over `ctx` cached tokens plus themselves."""
        pairs = new * (ctx + (new + 1) / 2)
        return max(self._attn_pair_s * pairs, self._attn_kv_s * (ctx + new) + self._attn_new_s * new)

    def _decode_attention(self, num_decodes: int, kv_sum: int) -> float:
        # Decode attention does 4q FLOPs per 2kv*d bytes of KV (about the GQA group size
        # per byte), far below any GPU's ridge point: every request is memory bound, so one
        # roofline term on the summed KV length equals the sum of per-request terms.
        return max(self._attn_pair_s * kv_sum, self._attn_kv_s * kv_sum + self._attn_new_s * num_decodes)

    def _decode_attention_many(self, num_decodes: int, kv_sums: np.ndarray) -> np.ndarray:
        # Same expression as _decode_attention, evaluated elementwise.
        return np.maximum(self._attn_pair_s * kv_sums, self._attn_kv_s * kv_sums + self._attn_new_s * num_decodes)
