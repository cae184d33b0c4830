"""Leave-one-out checks of the kernel model against the database's own measurements.

A measured point is removed, predicted from its neighbours with the model's own
interpolation rule, and compared with the measurement. Per operator this runs along
each measured axis; for a whole step, the points the step's shape lands on (its
GEMM m, its attention (batch, length) point) are held out of every table at once and
the step is recomposed (`HeldOut`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kairos.engine.batch_shape import BatchShape
from kairos.hardware import GPU
from kairos.models import ModelArch
from kairos.perf.kernels import ops
from kairos.perf.kernels.curves import leave_one_out
from kairos.perf.kernels.database import (
    AttentionGrid,
    GemmGrid,
    KernelTables,
    MemoryModel,
    MessageCurve,
    Phase,
)
from kairos.perf.kernels.model import KernelModel, gemm_dtype


@dataclass
class HeldOut:
    """`tables` with some measured points removed: GEMM m knots and attention (batch, seq) points."""

    tables: KernelTables
    m: tuple[float, ...] = ()
    context: tuple[tuple[float, float], ...] = ()
    generation: tuple[tuple[float, float], ...] = ()
    system: str = field(init=False)

    def __post_init__(self) -> None:
        self.system = self.tables.system

    def gemm(self, dtype: str) -> GemmGrid | None:
        grid = self.tables.gemm(dtype)
        if grid is None:
            return None
        keep = ~np.isin(grid.m, self.m)
        return GemmGrid(grid.m[keep], grid.n, grid.k, grid.seconds[keep])

    def attention(
        self, phase: Phase, heads: int, kv_heads: int, head_dim: int, kv_dtype: str
    ) -> AttentionGrid | None:
        grid = self.tables.attention(phase, heads, kv_heads, head_dim, kv_dtype)
        if grid is None:
            return None
        seconds = grid.seconds.copy()
        for batch, seq in self.context if phase == "context" else self.generation:
            rows, cols = np.flatnonzero(grid.batch == batch), np.flatnonzero(grid.seq == seq)
            seconds[np.ix_(rows, cols)] = np.nan
        return AttentionGrid(grid.batch, grid.seq, seconds)

    def attention_configs(self, phase: Phase, head_dim: int, kv_dtype: str) -> set[tuple[int, int]]:
        return self.tables.attention_configs(phase, head_dim, kv_dtype)

    def all_reduce(self, num_gpus: int) -> MessageCurve | None:
        return self.tables.all_reduce(num_gpus)

    def all_gather(self, num_gpus: int) -> MessageCurve | None:
        return self.tables.all_gather(num_gpus)

    def moe(
        self, dtype: str, hidden: int, inter: int, topk: int, experts: int, tp: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        return self.tables.moe(dtype, hidden, inter, topk, experts, tp)

    def memory(self) -> MemoryModel:
        return self.tables.memory()


def decode_shape(batch: int, kv: int) -> BatchShape:
    return BatchShape(num_decodes=batch, decode_kv_sum=batch * kv, num_sampled=batch)


def prefill_shape(tokens: int) -> BatchShape:
    return BatchShape(prefill_new=(tokens,), prefill_ctx=(0,), num_sampled=1)


@dataclass(frozen=True, slots=True)
class StepCheck:
    """A step composed from the full grid and from the grid with its own points held out."""

    label: str
    full_s: float
    held_out_s: float

    @property
    def error(self) -> float:
        return abs(self.held_out_s / self.full_s - 1.0)


def step_check(
    model: ModelArch, gpu: GPU, tables: KernelTables, shape: BatchShape, label: str, tp: int = 1,
) -> StepCheck:
    """Hold out the step's GEMM m knot and its attention grid point, recompose, compare."""
    if shape.num_decodes:
        kv = shape.decode_kv_sum / shape.num_decodes
        held = HeldOut(tables, m=(shape.num_tokens,), generation=((shape.num_decodes, kv),))
    else:
        held = HeldOut(tables, m=(shape.num_tokens,), context=((1, shape.prefill_new[0]),))
    full = KernelModel(model, gpu, tp, tables=tables).step_time(shape)
    return StepCheck(label, full, KernelModel(model, gpu, tp, tables=held).step_time(shape))


def operator_errors(model: ModelArch, tables: KernelTables, tp: int = 1) -> dict[str, np.ndarray]:
    """Leave-one-out relative errors per operator and axis for `model`'s shapes on these tables."""
    errors: dict[str, np.ndarray] = {}
    q = model.num_heads // tp * model.head_dim
    kv = model.kv_heads_per_gpu(tp) * model.head_dim
    h, width = model.hidden_size, model.intermediate_size // tp
    grid = tables.gemm(gemm_dtype(model))
    if grid is not None:
        shapes = {"qkv_proj": (q + 2 * kv, h), "o_proj": (h, q), "gate_up": (2 * width, h),
                  "down": (h, width), "lm_head": (-(-model.vocab_size // tp), h)}
        for label, (n, k) in shapes.items():
            curve = ops.gemm_curve(grid, n, k, 1, label, tables.system)
            errors[f"{label} GEMM, m axis"] = leave_one_out(curve.x, curve.y, "linear")
    kv_dtype = "fp8" if model.kv_cache_dtype == "fp8" else "bfloat16"
    heads, kv_heads = model.num_heads // tp, model.kv_heads_per_gpu(tp)
    found = ops.attention_grid(tables, "context", heads, kv_heads, model.head_dim, kv_dtype)
    if found is not None:
        ctx = found[0]
        errors["context attention, prompt axis"] = np.concatenate(
            [leave_one_out(ctx.seq, row, "loglog") for row in ctx.seconds])
    found = ops.attention_grid(tables, "generation", heads, kv_heads, model.head_dim, kv_dtype)
    if found is not None:
        gen = found[0]
        errors["generation attention, KV axis"] = np.concatenate(
            [leave_one_out(gen.seq, row, "linear") for row in gen.seconds])
        errors["generation attention, batch axis"] = np.concatenate(
            [leave_one_out(gen.batch, col, "linear") for col in gen.seconds.T])
    reduce_errors = []
    for gpus in (2, 4, 8):
        messages = tables.all_reduce(gpus)
        if messages is not None:
            reduce_errors.append(leave_one_out(messages.elements, messages.seconds, "linear"))
    if reduce_errors:
        errors["all-reduce (2/4/8 GPUs), message axis"] = np.concatenate(reduce_errors)
    return errors
