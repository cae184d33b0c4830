"""SimExecutor: the executor whose steps take the time a step-time model predicts."""

from __future__ import annotations

import numpy as np

from kairos.engine.scheduler import SchedulerOutput
from kairos.perf.base import BatchShape, StepTimeModel
from kairos.perf.machine_speed import HostSpeed
from kairos.sim.lockstep import LockstepStep


def _step_time(model: StepTimeModel, shape: BatchShape) -> float:
    if not shape.prefill_new:
        # Pure decode goes through decode_window even for one step so that it is
        # bit-identical to the same step inside a multi-step window.
        return float(model.decode_window(shape.num_decodes, shape.decode_kv_sum, 1, shape.decode_kv_max)[0])
    return model.step_time(shape)


class SimExecutor:
    """Predicts step durations; generates no token ids (the engine only counts tokens).

    With `speed` (validating against a measured run), each step's host work is
    scaled by the machine's speed when the step starts.
    """

    def __init__(self, model: StepTimeModel, speed: HostSpeed | None = None) -> None:
        self.model = model
        self.speed = speed

    def execute(self, out: SchedulerOutput) -> None:
        return None

    def duration(self, out: SchedulerOutput | LockstepStep, start: float) -> float:
        """Seconds of the step `out` (one engine's, or data-parallel ranks' in lockstep) from `start`."""
        if isinstance(out, LockstepStep):
            # Only a replay of a measured run has a speed, and measured runs are one engine.
            return self.model.rank_step_time(out.shapes)  # type: ignore[attr-defined]
        seconds = _step_time(self.model, out.shape)
        if self.speed is not None:
            seconds += self.speed.extra(start) * _step_time(self.speed.host, out.shape)
        return seconds

    def idle_penalty(self, idle_s: float, t: float) -> float:
        """What a step starting at `t` after `idle_s` seconds idle takes on top of its batch's time."""
        penalty = self.model.idle_penalty(idle_s)
        if self.speed is not None:
            penalty += self.speed.extra(t) * self.speed.host.idle_penalty(idle_s)
        return penalty

    def decode_durations(self, out: SchedulerOutput, steps: int, start: float) -> np.ndarray:
        """Seconds of each of `steps` pure-decode steps of `out`, the first starting at `start`."""
        shape = out.shape
        durations = self.model.decode_window(shape.num_decodes, shape.decode_kv_sum, steps, shape.decode_kv_max)
        if self.speed is None:
            return durations
        host = self.speed.host.decode_window(shape.num_decodes, shape.decode_kv_sum, steps, shape.decode_kv_max)
        # Step by step, each at its own start, with the additions the simulator's cumsum makes:
        # the window stays bit-identical to stepping one iteration at a time.
        scaled = np.empty_like(durations)
        t = start
        for i in range(steps):
            scaled[i] = durations[i] + self.speed.extra(t) * host[i]
            t = t + scaled[i]
        return scaled
