"""Calibrated step-time model: a step-time function fitted to steps measured on a real engine.

`kairos calibrate` times whole engine steps (schedule, forward, sample, update)
over a grid of batch shapes and fits the time as a non-negative combination of
the terms below by least squares on relative error. A profile file holds the
measured points, the fitted coefficients and the model's config, so the
simulator can rebuild both the architecture and the step times of that engine.
Since the measurement includes host time, engine overheads must not be added on top.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kairos.engine.attention_groups import prefill_attention_slots
from kairos.errors import KairosError
from kairos.models.arch import ModelArch
from kairos.perf.base import BatchShape

SCHEMA = "kairos.calibration/v1"

# What a step's time is fitted on, each a count that can only add work:
#   step: 1 per step (scheduling, input preparation, kernel launches of every layer)
#   prefill_tokens: new prompt tokens (projections, MLP, KV writes)
#   prefill_attention_slots: (query, key) pairs the executor's padded, masked SDPA
#     computes for the prefill chunks: per attention batch, chunks x longest chunk x
#     longest context (kairos.engine.attention_groups). Chunks of unequal length in one
#     batch pay for the longest: summed pairs underpredicted two-chunk steps by up to
#     37 % and overpredicted one-chunk steps beside decodes by 10-36 %.
#   prefill_chunks: prefill requests in the step (per-request metadata, attention batches)
#   decodes: decode requests (per-request projections, metadata, bookkeeping)
#   decode_attention_slots: KV slots the executor gathers and attends to for the decodes:
#     it pads them to the longest one, so decodes x longest KV length (`decode_slots`).
#     Summed lengths underpredicted served steps of 2-4 decodes of unequal lengths by
#     4-33 %, while calibration phases (equal prompts) showed no such error.
#   sampled: requests that sample a token (lm_head row, sampler, output handling)
#   mixed: 1 when decodes and prefill chunks share the step (two attention batches, not one)
#   idle_wake: for the first step after the engine sat idle, how cold its caches have
#     gone (see `idle_wake`); 0 for every step of a busy spell. Not a property of the
#     batch: the simulator adds it through CalibratedModel.idle_penalty.
TERMS: tuple[str, ...] = ("step", "prefill_tokens", "prefill_attention_slots", "prefill_chunks", "decodes",
                          "decode_attention_slots", "sampled", "mixed", "idle_wake")
# Terms of profiles from earlier versions, which summed attention pairs and KV lengths instead.
RETIRED_TERMS = ("prefill_context_pairs", "prefill_self_pairs", "decode_kv_tokens")
WAKE_COLUMN = TERMS.index("idle_wake")


@dataclass(frozen=True, slots=True)
class AttentionLayout:
    """What the executor's padded attention work depends on besides the batch.

    `min_split_slots` is the executor's threshold for splitting an attention batch
    (None: it never splits).
    """

    block_size: int = 1
    min_split_slots: int | None = None

    @classmethod
    def of_engine(cls, engine: dict[str, Any]) -> AttentionLayout:
        """From a profile's `engine` settings (block_size, attention_min_split_slots)."""
        return cls(int(engine.get("block_size") or 1), engine.get("attention_min_split_slots"))

    def prefill_slots(self, shape: BatchShape) -> int:
        return prefill_attention_slots(shape.prefill_new, shape.prefill_ctx, self.block_size, self.min_split_slots)


def decode_slots(shape: BatchShape) -> int:
    """KV slots of the decodes padded to the longest (their summed lengths where that is not known).

    Neither rounded up to whole blocks as the executor gathers them nor cut into the
    runs the executor splits very unequal lengths into (a shape holds only the longest):
    kept linear in the step, so that a window of decode steps is predicted exactly as
    step by step.
    """
    return shape.num_decodes * shape.decode_kv_max if shape.decode_kv_max else shape.decode_kv_sum


def term_values(shape: BatchShape, wake: float = 0.0, layout: AttentionLayout = AttentionLayout()
                ) -> tuple[float, ...]:
    """The value of every term of TERMS for one step (`wake`: its idle_wake value)."""
    new = shape.prefill_new
    mixed = 1.0 if new and shape.num_decodes else 0.0
    return (1.0, float(sum(new)), float(layout.prefill_slots(shape)), float(len(new)), float(shape.num_decodes),
            float(decode_slots(shape)), float(shape.num_sampled), mixed, wake)


def idle_wake(idle_s: float, time_constant_s: float) -> float:
    """How far towards fully cold a step starts after `idle_s` seconds idle: 1 - exp(-idle / tau).

    Measured on a 2-core virtual machine with the tiny model: the first step after
    a gap ran 0.1 ms slower after 1 ms idle, 0.7 ms after 3 ms and 1.1-1.2 ms after
    30-100 ms, whether the engine slept or spun, while the same step back to back
    took 0.9 ms. Its caches are lost to whatever else runs, at a rate the
    time constant captures.
    """
    if idle_s <= 0.0 or time_constant_s <= 0.0:
        return 0.0
    return -math.expm1(-idle_s / time_constant_s)


# ---- measured points ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeasuredPoint:
    """One grid point: its step shape and the median of its repeated step times.

    `idle_s`: how long the engine sat idle right before the step (0 inside a busy spell);
    `reference_s`: the server's reference step then, the machine's speed (0: not measured);
    `start_s`: when a served step started, on the server's monotonic clock (0: not logged;
    profiles do not keep it).
    """

    kind: str  # "prefill", "decode", "mixed" or "served"
    shape: BatchShape
    time_s: float
    times_s: tuple[float, ...]
    idle_s: float = 0.0
    reference_s: float = 0.0
    start_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        s = self.shape
        return {"kind": self.kind, "prefill_new": list(s.prefill_new), "prefill_ctx": list(s.prefill_ctx),
                "num_decodes": s.num_decodes, "decode_kv_sum": s.decode_kv_sum,
                "num_sampled": s.num_sampled, "decode_kv_max": s.decode_kv_max, "time_s": self.time_s,
                "times_s": list(self.times_s), "idle_s": self.idle_s, "reference_s": self.reference_s}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasuredPoint:
        shape = BatchShape(tuple(int(n) for n in data["prefill_new"]),
                           tuple(int(c) for c in data["prefill_ctx"]),
                           int(data["num_decodes"]), int(data["decode_kv_sum"]), int(data["num_sampled"]),
                           int(data.get("decode_kv_max", 0)))
        return cls(str(data["kind"]), shape, float(data["time_s"]), tuple(float(t) for t in data["times_s"]),
                   float(data.get("idle_s", 0.0)), float(data.get("reference_s", 0.0)))


# ---- fitting --------------------------------------------------------------------------


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
IDLE_TIME_CONSTANTS_S: tuple[float, ...] = (0.5e-3, 1e-3, 2e-3, 3e-3, 5e-3, 8e-3, 13e-3, 20e-3, 50e-3)
# Rounds of weights from the fitted times after the first fit from the measured ones (3 settled
# the coefficients of served calibrations to within 1 %).
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
    the fit lands under the shape's mean. On 2-core served calibrations that
    put the fit 5-13 % under the mean time of each kind of decode step.
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


# ---- profile file ---------------------------------------------------------------------


def load_profile(path: str | Path) -> dict[str, Any]:
    """Read and check a calibration profile written by `kairos calibrate`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise KairosError(f"{path}: no such calibration profile (write one with `kairos calibrate`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise KairosError(f"{path}: cannot read calibration profile: {err}") from err
    check_profile(data, str(path))
    return data


def check_profile(data: Any, source: str = "calibration profile") -> None:
    """Raise KairosError naming `source` unless `data` is a usable calibration profile."""
    if not isinstance(data, dict):
        raise KairosError(f"{source}: not a JSON object")
    if data.get("schema") != SCHEMA:
        raise KairosError(f"{source}: schema is {data.get('schema')!r}, expected '{SCHEMA}' "
                          "(not a profile from `kairos calibrate`?)")
    for key, kind in (("model", str), ("model_config", dict), ("terms", list), ("coefficients", dict)):
        if not isinstance(data.get(key), kind):
            raise KairosError(f"{source}: '{key}' is missing or not a {kind.__name__}")
    unknown = [t for t in data["terms"] if t not in TERMS]
    if any(t in RETIRED_TERMS for t in unknown):
        raise KairosError(f"{source}: written by an older `kairos calibrate` (term {unknown[0]!r} is retired): "
                          "calibrate again")
    if unknown:
        raise KairosError(f"{source}: unknown term {unknown[0]!r} (known: {', '.join(TERMS)})")
    for term in data["terms"]:
        value = data["coefficients"].get(term)
        if not finite_number(value) or value < 0:
            raise KairosError(f"{source}: coefficient of '{term}' must be a finite number >= 0, got {value!r}")
    tau = data.get("idle_time_constant_s", 0.0)
    if not finite_number(tau) or tau < 0:
        raise KairosError(f"{source}: 'idle_time_constant_s' must be a finite number >= 0, got {tau!r}")
    speed = data.get("machine_speed")
    if speed is not None:
        reference = speed.get("reference_step_s") if isinstance(speed, dict) else None
        if not finite_number(reference) or reference <= 0:
            raise KairosError(f"{source}: machine_speed.reference_step_s must be a finite number > 0, "
                              f"got {reference!r}")
    engine = data.get("engine", {})
    if not isinstance(engine, dict):
        raise KairosError(f"{source}: 'engine' must be an object")
    for key, least in (("block_size", 1), ("attention_min_split_slots", 0)):
        value = engine.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise KairosError(f"{source}: engine.{key} must be an integer >= {least}, got {value!r}")


def finite_number(value: Any) -> bool:
    """Whether a JSON value is a finite number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---- the model ------------------------------------------------------------------------


class CalibratedModel:
    """Step time from a calibration profile: the fitted combination of TERMS.

    Terms a profile does not list count zero. The result is whole-step wall time
    of the measured engine, host work included: never wrap it in WithOverheads.
    The idle_wake term is not a batch's: the simulator adds `idle_penalty` to the
    first step after an idle gap.
    """

    name = "calibrated"

    def __init__(self, profile: dict[str, Any] | str | Path) -> None:
        if isinstance(profile, dict):
            check_profile(profile)
        else:
            profile = load_profile(profile)
        self.profile = profile
        # Front-end time before the engine sees a request (measured through a server's API).
        self.request_latency_s = float(profile.get("request_latency_s", 0.0))
        coef = {term: float(profile["coefficients"][term]) for term in profile["terms"]}
        self.coefficients: tuple[float, ...] = tuple(coef.get(term, 0.0) for term in TERMS)
        # Seconds per unit of each term, unpacked once: step_time runs for every simulated step.
        (self._per_step, self._per_prefill_token, self._per_attention_slot, self._per_chunk, self._per_decode,
         self._per_decode_slot, self._per_sampled, self._per_mixed_step, self._per_idle_wake) = self.coefficients
        self.layout = AttentionLayout.of_engine(profile.get("engine") or {})
        self.idle_time_constant_s = float(profile.get("idle_time_constant_s", 0.0))

    def arch(self) -> ModelArch:
        """The architecture of the measured model, from the profile's HF-style config."""
        dtype_bytes = int(self.profile.get("dtype_bytes", 2))
        return ModelArch.from_hf_config(self.profile["model_config"], name=self.profile["model"],
                                        dtype_bytes=dtype_bytes)

    # ---- StepTimeModel -------------------------------------------------------------

    def step_time(self, shape: BatchShape) -> float:
        """Seconds for one step of any shape; decode-only steps agree bit for bit with decode_window."""
        # The decode part is written exactly as decode_window's elementwise expression.
        t = (self._per_step + self._per_decode * shape.num_decodes + self._per_decode_slot * decode_slots(shape)
             + self._per_sampled * shape.num_sampled)
        new = shape.prefill_new
        if new:
            t += (self._per_prefill_token * sum(new) + self._per_attention_slot * self.layout.prefill_slots(shape)
                  + self._per_chunk * len(new))
            if shape.num_decodes:
                t += self._per_mixed_step
        return t

    def decode_window(self, num_decodes: int, decode_kv_sum: int, steps: int, decode_kv_max: int = 0
                      ) -> np.ndarray:
        """Seconds for each of `steps` pure-decode steps; in step i every decode's KV is one longer."""
        grown = np.arange(steps, dtype=np.float64)
        # decode_slots of step i, as exact integers in float64.
        slots = num_decodes * (decode_kv_max + grown) if decode_kv_max else decode_kv_sum + num_decodes * grown
        return (self._per_step + self._per_decode * num_decodes + self._per_decode_slot * slots
                + self._per_sampled * num_decodes)

    def idle_penalty(self, idle_s: float) -> float:
        """Seconds the first step after `idle_s` seconds idle takes beyond step_time (caches gone cold)."""
        return self._per_idle_wake * idle_wake(idle_s, self.idle_time_constant_s)

    # ---- explanation ---------------------------------------------------------------

    def breakdown(self, shape: BatchShape) -> dict[str, float]:
        """Seconds per fitted term for one step; the values sum to step_time (up to rounding)."""
        return {term: c * v for term, c, v in zip(TERMS, self.coefficients, term_values(shape, layout=self.layout))}
