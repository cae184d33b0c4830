"""SimExecutor: the executor whose steps take the time a step-time model predicts."""

from __future__ import annotations

import numpy as np

from kairos.engine.scheduler import SchedulerOutput
from kairos.perf.base import StepTimeModel


class SimExecutor:
    """Predicts step durations; generates no token ids (the engine only counts tokens)."""

    def __init__(self, model: StepTimeModel) -> None:
        self.model = model

    def execute(self, out: SchedulerOutput) -> None:
        return None

    def duration(self, out: SchedulerOutput) -> float:
        shape = out.shape
        if not shape.prefill_new:
            # Pure decode goes through decode_window even for one step so that it is
            # bit-identical to the same step inside a multi-step window.
            return float(self.model.decode_window(shape.num_decodes, shape.decode_kv_sum, 1, shape.decode_kv_max)[0])
        return self.model.step_time(shape)

    def idle_penalty(self, idle_s: float) -> float:
        """What a step starting after `idle_s` seconds idle takes on top of its batch's time."""
        return self.model.idle_penalty(idle_s)

    def decode_durations(self, out: SchedulerOutput, steps: int) -> np.ndarray:
        shape = out.shape
        return self.model.decode_window(shape.num_decodes, shape.decode_kv_sum, steps, shape.decode_kv_max)
