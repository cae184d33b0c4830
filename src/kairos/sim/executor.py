"""SimExecutor: the executor whose steps take the time a step-time model predicts."""

from __future__ import annotations

import numpy as np

from kairos.engine.scheduler import SchedulerOutput
from kairos.perf.base import StepTimeModel
from kairos.sim.lockstep import LockstepStep


class SimExecutor:
    """Predicts step durations; generates no token ids (the engine only counts tokens)."""

    def __init__(self, model: StepTimeModel) -> None:
        self.model = model

    def execute(self, out: SchedulerOutput) -> None:
        return None

    def duration(self, out: SchedulerOutput | LockstepStep, start: float) -> float:
        """Seconds of the step `out` (one engine's, or data-parallel ranks' in lockstep) from `start`."""
        if isinstance(out, LockstepStep):
            return self.model.rank_step_time(out.shapes)  # type: ignore[attr-defined]
        shape = out.shape
        if not shape.prefill_new:
            # Pure decode goes through decode_window even for one step so that it is
            # bit-identical to the same step inside a multi-step window.
            return float(self.model.decode_window_at(shape.num_decodes, shape.decode_kv_sum, 1,
                                                     shape.decode_kv_max, start)[0])
        return self.model.step_time_at(shape, start)

    def idle_penalty(self, idle_s: float, t: float) -> float:
        """What a step starting at `t` after `idle_s` seconds idle takes on top of its batch's time."""
        return self.model.idle_penalty_at(idle_s, t)

    def decode_durations(self, out: SchedulerOutput, steps: int, start: float) -> np.ndarray:
        """Seconds of each of `steps` pure-decode steps of `out`, the first starting at `start`."""
        shape = out.shape
        return self.model.decode_window_at(shape.num_decodes, shape.decode_kv_sum, steps, shape.decode_kv_max, start)
