"""Per-operator latency curves for one model, GPU and TP degree, built from the kernel tables.

Everything here runs once per `KernelModel`; the model tabulates the results so that
a step lookup is a few list indexings.
"""

from __future__ import annotations

import logging

import numpy as np

from kairos.engine.batch_shape import BatchShape
from kairos.perf.kernels.curves import Curve, fill_gaps
from kairos.perf.kernels.database import AttentionGrid, GemmGrid, KernelTables, MemoryModel, Phase
from kairos.perf.roofline import RooflineModel

_LOG = logging.getLogger("kairos.perf.kernels")
_WARNED: set[str] = set()

# Roofline values are tabulated at these sizes when an operator is not in the database;
# the roofline is piecewise linear in them, so linear interpolation loses little.
ROOFLINE_SIZES = np.unique(np.round(np.geomspace(1, 1 << 17, 97)))


def warn_once(key: str, message: str) -> None:
    """logging.warning the first time `key` is seen in this process."""
    if key not in _WARNED:
        _WARNED.add(key)
        _LOG.warning(message)


# ---- GEMM ------------------------------------------------------------------------------


def _corner(grid: GemmGrid, i: int, j: int) -> np.ndarray:
    """Seconds over the m knots for the measured pair (n[i], k[j]), gaps filled."""
    y = grid.seconds[:, i, j]
    if np.isnan(y).all():
        # A pair the collector skipped (the largest one, for memory): scale the nearest
        # smaller n, since GEMM time grows in proportion to n at these sizes.
        lower = next(ii for ii in range(i - 1, -1, -1) if not np.isnan(grid.seconds[:, ii, j]).all())
        return _corner(grid, lower, j) * (grid.n[i] / grid.n[lower])
    return fill_gaps(grid.m, y, "proportional")


def _axis_weights(knots: np.ndarray, target: float, what: str, system: str) -> list[tuple[int, float]]:
    """(knot index, weight) pairs giving `target` along one GEMM axis."""
    if target > knots[-1]:
        warn_once(f"{system}:{what}:above", (
            f"kernels: {what}={target:g} is beyond the measured {knots[-1]:g} on {system}; "
            "scaled in proportion to it"))
        return [(len(knots) - 1, target / knots[-1])]
    if target < knots[0]:
        warn_once(f"{system}:{what}:below", (
            f"kernels: {what}={target:g} is below the smallest measured {knots[0]:g} on {system}; "
            "clamped to it"))
        return [(0, 1.0)]
    i = int(np.searchsorted(knots, target, side="right")) - 1
    if knots[i] == target:
        return [(i, 1.0)]
    w = (target - knots[i]) / (knots[i + 1] - knots[i])
    return [(i, 1.0 - w), (i + 1, w)]


def gemm_curve(grid: GemmGrid, n: int, k: int, count: int, label: str, system: str) -> Curve:
    """`count` GEMMs with output width n and depth k, by m: bilinear in (n, k) between knots."""
    y = np.zeros(len(grid.m))
    for i, wn in _axis_weights(grid.n, n, f"{label} GEMM n", system):
        for j, wk in _axis_weights(grid.k, k, f"{label} GEMM k", system):
            y = y + (wn * wk) * _corner(grid, i, j)
    return Curve(grid.m, y * count, "proportional", f"{label} GEMM m")


# ---- attention ---------------------------------------------------------------------------


def _reindex(grid: AttentionGrid, batch: np.ndarray, seq: np.ndarray) -> np.ndarray:
    out = np.full((len(batch), len(seq)), np.nan)
    rows = np.searchsorted(batch, grid.batch)
    cols = np.searchsorted(seq, grid.seq)
    out[np.ix_(rows, cols)] = grid.seconds
    return out


def attention_grid(
    tables: KernelTables, phase: Phase, heads: int, kv_heads: int, head_dim: int, kv_dtype: str,
) -> tuple[AttentionGrid, int] | None:
    """The measured grid for this head configuration and the batch multiplier to apply.

    Unmeasured configurations are derived, in order: linearly between the nearest
    measured head counts with the same KV heads; or by folding extra heads into the
    batch (heads and sequences are both independent work items of the kernel grid, so
    r times the heads costs about what r times the batch does). None if neither works.
    """
    exact = tables.attention(phase, heads, kv_heads, head_dim, kv_dtype)
    if exact is not None:
        return exact, 1
    system = tables.system
    configs = tables.attention_configs(phase, head_dim, kv_dtype)
    same_kv = sorted(h for h, kv in configs if kv == kv_heads)
    lower = [h for h in same_kv if h < heads]
    upper = [h for h in same_kv if h > heads]
    if lower and upper:
        lo = tables.attention(phase, lower[-1], kv_heads, head_dim, kv_dtype)
        hi = tables.attention(phase, upper[0], kv_heads, head_dim, kv_dtype)
        assert lo is not None and hi is not None
        w = (heads - lower[-1]) / (upper[0] - lower[-1])
        batch = np.union1d(lo.batch, hi.batch)
        seq = np.union1d(lo.seq, hi.seq)
        seconds = (1.0 - w) * _reindex(lo, batch, seq) + w * _reindex(hi, batch, seq)
        warn_once(f"{system}:{phase}:{heads}/{kv_heads}", (
            f"kernels: {phase} attention with {heads}/{kv_heads} heads is not measured on {system}; "
            f"interpolated between {lower[-1]} and {upper[0]} query heads"))
        return AttentionGrid(batch, seq, seconds), 1
    for r in (2, 4, 8, 16, 32, 64):
        if heads % r or kv_heads % r or (heads // r, kv_heads // r) not in configs:
            continue
        grid = tables.attention(phase, heads // r, kv_heads // r, head_dim, kv_dtype)
        if grid is not None and r in grid.batch:
            warn_once(f"{system}:{phase}:{heads}/{kv_heads}", (
                f"kernels: {phase} attention with {heads}/{kv_heads} heads is not measured on {system}; "
                f"using {heads // r}/{kv_heads // r} heads at {r}x the batch"))
            return grid, r
    return None


# ---- memory-bound kernels ------------------------------------------------------------


def memory_curve(memory: MemoryModel, kernels: int, bytes_per_token: float, label: str) -> Curve:
    """`kernels` memory-bound launches each moving `bytes_per_token` per token (exactly affine)."""
    x = np.array([1.0, float(1 << 30)])
    y = kernels * (memory.launch_s + bytes_per_token * x * memory.seconds_per_byte())
    return Curve(x, y, "secant", label)


# ---- roofline fallbacks ------------------------------------------------------------------


def roofline_token_curve(roofline: RooflineModel, key: str, label: str) -> Curve:
    """Roofline seconds of a token-count operator (breakdown key `key`) at ROOFLINE_SIZES."""
    shapes = [BatchShape(num_decodes=int(t), decode_kv_sum=int(t)) for t in ROOFLINE_SIZES]
    y = [roofline.breakdown(shape)[key] for shape in shapes]
    return Curve(ROOFLINE_SIZES, np.asarray(y), "secant", f"{label} (roofline)")


def roofline_sampled_curve(roofline: RooflineModel, key: str, label: str) -> Curve:
    """Roofline seconds of a sampled-token operator; `tp_comm` keeps only the logits gather."""
    y = []
    for s in ROOFLINE_SIZES:
        shape = BatchShape(num_decodes=int(s), decode_kv_sum=int(s), num_sampled=int(s))
        value = roofline.breakdown(shape)[key]
        if key == "tp_comm":
            value -= roofline.breakdown(BatchShape(num_decodes=int(s), decode_kv_sum=int(s)))[key]
        y.append(value)
    return Curve(ROOFLINE_SIZES, np.asarray(y), "secant", f"{label} (roofline)")


def roofline_attention_grid(roofline: RooflineModel, phase: Phase, layers: int) -> AttentionGrid:
    """Per-layer roofline attention on a grid shaped like the database's."""
    if phase == "context":
        batch, seq = np.array([1.0]), 2.0 ** np.arange(0, 18)
        shapes = [[BatchShape(prefill_new=(int(s),), prefill_ctx=(0,)) for s in seq]]
        key = "attention_prefill"
    else:
        batch, seq = 2.0 ** np.arange(0, 12), 2.0 ** np.arange(1, 18)
        shapes = [[BatchShape(num_decodes=int(b), decode_kv_sum=int(b * s)) for s in seq] for b in batch]
        key = "attention_decode"
    values = [[roofline.breakdown(shape)[key] for shape in row] for row in shapes]
    return AttentionGrid(batch, seq, np.asarray(values) / layers)
