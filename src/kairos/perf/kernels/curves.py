"""Interpolation rules over measured latency grids.

The rules were chosen by leave-one-out error on the database itself
(benchmarks/kernels_loo.py): piecewise-linear in the measured size beats log-log for
GEMM m, GEMM n/k and generation attention; log-log wins for context attention,
whose cost is quadratic in the prompt length. Beyond the last measured point a GEMM
or MoE grows in proportion to its size (twice the rows is two GEMMs side by side),
decode attention follows the slope of its last measured segment (it is already
bandwidth bound there), and context attention follows the power law through its
last two points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Beyond = Literal["proportional", "secant", "power"]


def fill_gaps(x: np.ndarray, y: np.ndarray, beyond: Beyond) -> np.ndarray:
    """`y` with its NaNs filled: linearly between measured points, flat before the first
    one, by `beyond` after the last one. All-NaN input stays all-NaN."""
    known = ~np.isnan(y)
    if known.all() or not known.any():
        return y
    return interpolate(x, x[known], y[known], beyond)


def interpolate(xq: np.ndarray | float, x: np.ndarray, y: np.ndarray, beyond: Beyond) -> np.ndarray:
    """Piecewise-linear y(xq) through the knots (x, y), flat below x[0], `beyond` above x[-1]."""
    xq = np.asarray(xq, dtype=np.float64)
    out = np.interp(xq, x, y)
    above = xq > x[-1]
    if above.any():
        out = np.where(above, extend(xq, x, y, beyond), out)
    return out


def interpolate_loglog(xq: np.ndarray | float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Piecewise-linear in log-log space, flat below x[0], the last segment's power law above."""
    xq = np.asarray(xq, dtype=np.float64)
    inside = np.exp(np.interp(np.log(np.maximum(xq, x[0])), np.log(x), np.log(y)))
    above = xq > x[-1]
    if above.any():
        inside = np.where(above, extend(xq, x, y, "power"), inside)
    return inside


def extend(xq: np.ndarray, x: np.ndarray, y: np.ndarray, beyond: Beyond) -> np.ndarray:
    """Values past the last knot by the named rule (a single knot can only scale proportionally)."""
    if beyond == "proportional" or len(x) < 2:
        return y[-1] * (xq / x[-1])
    if beyond == "secant":
        return y[-1] + (y[-1] - y[-2]) / (x[-1] - x[-2]) * (xq - x[-1])
    exponent = np.log(y[-1] / y[-2]) / np.log(x[-1] / x[-2])
    return y[-1] * (xq / x[-1]) ** exponent


@dataclass(frozen=True, slots=True)
class Curve:
    """Seconds at increasing sizes `x` (tokens, messages), piecewise-linear between knots.

    `label` names what was measured, for warnings when a lookup leaves the grid.
    """

    x: np.ndarray
    y: np.ndarray
    beyond: Beyond
    label: str

    def __call__(self, size: np.ndarray | float) -> np.ndarray:
        return interpolate(size, self.x, self.y, self.beyond)

    @property
    def last(self) -> float:
        return float(self.x[-1])


def leave_one_out(
    x: np.ndarray, y: np.ndarray, rule: Literal["linear", "loglog"], beyond: Beyond = "secant",
    include_last: bool = False,
) -> np.ndarray:
    """Relative errors |predicted / measured - 1| at each interior knot predicted from the others.

    With `include_last` the last knot is also predicted, by extrapolation with `beyond`.
    NaN knots (not measured) are skipped.
    """
    keep = ~np.isnan(y)
    x, y = x[keep], y[keep]
    errors = []
    stop = len(x) if include_last else len(x) - 1
    for i in range(1, stop):
        xs, ys = np.delete(x, i), np.delete(y, i)
        if rule == "loglog":
            predicted = float(interpolate_loglog(x[i], xs, ys))
        else:
            predicted = float(interpolate(x[i], xs, ys, beyond))
        errors.append(abs(predicted / y[i] - 1.0))
    return np.asarray(errors, dtype=np.float64)
