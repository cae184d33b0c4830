"""How well a step-time model predicts the engine steps a measured run logged.

A twin's latencies can be off because its step model mispredicts the steps, or
because it schedules, queues or streams differently from the real server. Where
the run holds the engine's own steps (kairos.bench.engine_steps), predicting
each of them tells the two apart: on a machine whose speed drifts, a run whose
steps ran 20 % slower than calibrated has a TPOT about 20 % slower too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kairos.calibration.profile import MeasuredPoint
from kairos.engine.batch_shape import BatchShape
from kairos.perf.base import StepTimeModel

STEP_KINDS = ("prefill", "mixed", "decode")


def step_kind(shape: BatchShape) -> str:
    """prefill (prefill chunks only), decode (decodes only) or mixed (both in one step)."""
    if not shape.prefill_new:
        return "decode"
    return "mixed" if shape.num_decodes else "prefill"


def step_time_errors(steps: Sequence[MeasuredPoint], model: StepTimeModel, zero_s: float = 0.0) -> dict[str, Any]:
    """Measured and predicted time of `steps` in total and by kind of step, with the error in %.

    A step after an idle gap is predicted with the model's idle penalty, as the
    simulator does; each step as starting at its `start_s` less `zero_s` (the
    replay's clock), for a model whose machine speed changes over the run.
    """
    totals = {kind: [0, 0.0, 0.0] for kind in STEP_KINDS}  # steps, measured s, predicted s
    for step in steps:
        total = totals[step_kind(step.shape)]
        total[0] += 1
        total[1] += step.time_s
        total[2] += _predicted(model, step, step.start_s - zero_s)
    by_kind = {kind: _summary(*totals[kind]) for kind in STEP_KINDS if totals[kind][0]}
    overall = _summary(len(steps), sum(t[1] for t in totals.values()), sum(t[2] for t in totals.values()))
    return {**overall, "by_kind": by_kind}


def _predicted(model: StepTimeModel, step: MeasuredPoint, start_s: float) -> float:
    idle = model.idle_penalty_at(step.idle_s, start_s) if step.idle_s > 0 else 0.0
    return model.step_time_at(step.shape, start_s) + idle


def _summary(count: int, measured_s: float, predicted_s: float) -> dict[str, Any]:
    return {"steps": count, "measured_s": measured_s, "predicted_s": predicted_s,
            "error_pct": (predicted_s / measured_s - 1.0) * 100.0 if measured_s > 0 else 0.0}
