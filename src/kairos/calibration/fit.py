"""Fitting a step time to measured steps: non-negative least squares on TERMS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kairos.calibration.profile import MeasuredPoint
from kairos.calibration.terms import TERMS, WAKE_COLUMN, AttentionLayout, idle_wake, term_values
from kairos.errors import KairosError


@dataclass(frozen=True, slots=True)
class StepTimeFit:
    """Fitted coefficients (seconds per unit of each term) and the relative error of the fit.

    The held-out errors predict each point from a fit that did not see it
    (k-fold cross-validation), a fairer guess of the error on unmeasured shapes.
    `idle_time_constant_s` is the idle_wake time constant that fitted best (0 when
    no point followed an idle gap, and idle_wake then fits 0).
    """

    coefficients: dict[str, float]
    median_abs_error_pct: float
    p90_abs_error_pct: float
    heldout_median_abs_error_pct: float
    heldout_p90_abs_error_pct: float
    folds: int
    idle_time_constant_s: float = 0.0

    def errors(self) -> dict[str, float | int]:
        return {"median_abs_error_pct": self.median_abs_error_pct, "p90_abs_error_pct": self.p90_abs_error_pct,
                "heldout_median_abs_error_pct": self.heldout_median_abs_error_pct,
                "heldout_p90_abs_error_pct": self.heldout_p90_abs_error_pct, "folds": self.folds}


# The idle_wake time constants a fit tries (seconds); the one with the least residual is kept.
IDLE_TIME_CONSTANTS_S: tuple[float, ...] = (0.5e-3, 1e-3, 2e-3, 3e-3, 5e-3, 8e-3, 13e-3, 20e-3, 50e-3, 0.1, 0.2,
                                             0.5, 1.0, 2.0)
# Rounds of weights from the fitted times after the first fit from the measured ones: enough for
# the coefficients to settle.
REWEIGHTS = 3


def fit_step_time(points: Sequence[MeasuredPoint], folds: int = 5, weight_power: float = 1.0,
                  layout: AttentionLayout = AttentionLayout()) -> StepTimeFit:
    """Non-negative least squares of step time on TERMS, each step's error weighted by its time ** -weight_power.

    1, relative error (the default), suits a designed grid: its steps range from
    a millisecond to seconds, and an absolute fit would ignore the short decode
    steps. Steps logged while serving need less: 0 would let the long steps of
    big batches decide the short ones a server mostly runs. 0.5 sits between:
    errors weighted as if their variance grew with the step's duration, as a
    pause's chance to land in a step does.

    The weights come from the fitted time, not the measured one (REWEIGHTS
    rounds of reweighting from a first fit): weighted by its own measured time,
    a step slowed by a pause counts less than a quick one of the same shape, and
    the fit lands under the shape's mean.
    """
    if len(points) < len(TERMS):
        raise KairosError(f"fitting {len(TERMS)} terms needs at least {len(TERMS)} measured points, "
                          f"got {len(points)}")
    y = np.array([p.time_s for p in points], dtype=np.float64)
    if not (y > 0).all():
        raise KairosError("measured step times must be positive")
    # Only the idle_wake column depends on the time constant: build the rest once.
    base = np.array([term_values(p.shape, 0.0, layout) for p in points], dtype=np.float64)
    taus = IDLE_TIME_CONSTANTS_S if any(p.idle_s > 0 for p in points) else (0.0,)
    weight = y ** -weight_power
    for round_ in range(REWEIGHTS + 1):
        tau, x, coef = _best_time_constant(base, points, y, weight, taus)
        if round_ < REWEIGHTS:
            # A fitted time of 0 (a shape no term charges) falls back to the shortest measured step.
            weight = np.maximum(x @ coef, y.min()) ** -weight_power
    fitted = _abs_error_pct(x @ coef, y)
    folds = max(2, min(folds, len(points)))
    heldout_pred = np.empty_like(y)
    fold_of = np.arange(len(y)) % folds
    for f in range(folds):
        test = fold_of == f
        heldout_pred[test] = x[test] @ _weighted_nnls(x[~test], y[~test], weight[~test])
    heldout = _abs_error_pct(heldout_pred, y)
    return StepTimeFit(
        {term: float(c) for term, c in zip(TERMS, coef)},
        float(np.median(fitted)), float(np.percentile(fitted, 90)),
        float(np.median(heldout)), float(np.percentile(heldout, 90)), folds, tau,
    )


def _best_time_constant(base: np.ndarray, points: Sequence[MeasuredPoint], y: np.ndarray, weight: np.ndarray,
                        taus: Sequence[float]) -> tuple[float, np.ndarray, np.ndarray]:
    """(idle_wake time constant, term matrix, coefficients) of the weighted fit with the least residual."""
    best: tuple[float, float, np.ndarray, np.ndarray] | None = None
    for tau in taus:
        x = base.copy()
        x[:, WAKE_COLUMN] = [idle_wake(p.idle_s, tau) for p in points]
        coef = _weighted_nnls(x, y, weight)
        residual = float(np.linalg.norm((x @ coef - y) * weight))
        if best is None or residual < best[0]:
            best = (residual, tau, x, coef)
    assert best is not None
    return best[1], best[2], best[3]


def _abs_error_pct(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    return np.abs(predicted - measured) / measured * 100.0


def _weighted_nnls(x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """argmin ||(x c - y) * weight|| over c >= 0, with columns and target scaled to unit size first."""
    a = x * weight[:, None]
    b = y * weight
    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0  # a term absent from every point keeps coefficient 0
    unit = float(np.abs(b).mean())
    return nnls(a / scale, b / unit) / scale * unit


def nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin ||a x - b|| subject to x >= 0 (Lawson and Hanson's active-set method).

    numpy only, so that fitting needs no scipy; a few dozen columns at most.
    """
    rows, cols = a.shape
    x = np.zeros(cols)
    passive = np.zeros(cols, dtype=bool)
    tol = 10 * np.finfo(float).eps * np.linalg.norm(a, 1) * max(rows, cols)
    for _ in range(3 * cols):
        gradient = a.T @ (b - a @ x)
        candidates = ~passive & (gradient > tol)
        if not candidates.any():
            break
        passive[np.argmax(np.where(candidates, gradient, -np.inf))] = True
        while passive.any():
            z = np.zeros(cols)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > tol).all():
                x = z
                break
            # Move from x towards z until the first coefficient reaches zero; it leaves the passive set.
            falling = np.flatnonzero(passive & (z <= tol))
            drop = x[falling] - z[falling]
            ratios = np.divide(x[falling], drop, out=np.zeros(len(falling)), where=drop > 0)
            first = np.argmin(ratios)
            x = x + ratios[first] * (z - x)
            x[falling[first]] = 0.0
            passive &= x > tol
            x[~passive] = 0.0
    return x
