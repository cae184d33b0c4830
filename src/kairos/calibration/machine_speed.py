"""How fast the machine ran while steps were measured, from the server's reference step.

`kairos serve --reference-step-ms` times one fixed decode step of its model now
and then and logs the latest reading with every step
(kairos.serve.reference_step). A calibration profile records the mean
reading over its steps; a measured run's time-weighted mean reading over that
is the factor by which the machine ran slower (> 1) or faster (< 1) than at
calibration. Where the run's steps also carry their start times, the readings
make a timeline instead (SpeedTimeline), and `AtMachineSpeed` runs each
simulated step at the speed the machine had when it started, interpolated
between the readings before and after it: on a shared machine the speed swings
within seconds, and slow spells are when queues, and so the big batches, build
up, which a run-wide factor would spread over the whole run.

What the factor scales is the engine's host work: the fitted times per step,
per prefill chunk, per decode and per sampled token (the interpreter and
kernel-launch work the reference step is made of). The per-token and
per-attention-slot times (the kernels' arithmetic) and the front-end latency
(another process) stay as calibrated: a slow spell of a shared CPU slows the
host work and leaves the kernels' arithmetic and the API server's time nearly as
they were.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kairos.calibration.model import CalibratedModel
from kairos.calibration.profile import MeasuredPoint
from kairos.engine.batch_shape import BatchShape
from kairos.perf.base import StepTimeModel

SPEED_KEY = "machine_speed"  # the profile's record: {"reference_step_s": ..., "steps_with_reading": ...}
# The terms of host work, which run as much slower as the reference step does.
HOST_TERMS = ("step", "prefill_chunks", "decodes", "sampled", "mixed", "idle_wake")


def reference_time(points: Sequence[MeasuredPoint]) -> tuple[float, float]:
    """(mean reference reading weighted by step time, share of the steps' time that had a reading).

    (0.0, 0.0) when no step carries a reading.
    """
    timed = sum(p.time_s for p in points)
    read = [p for p in points if p.reference_s > 0]
    read_time = sum(p.time_s for p in read)
    if not read or read_time <= 0 or timed <= 0:
        return 0.0, 0.0
    return sum(p.reference_s * p.time_s for p in read) / read_time, read_time / timed


def mean_reading(points: Sequence[MeasuredPoint]) -> float:
    """The mean reading over the steps that carry one, each step counted once (0.0: none does).

    What a calibration records as its speed: weighted by step time, the mean
    leans on the long steps of big batches, whose readings (taken between them)
    run slower than the light load of a benchmark sees.
    """
    readings = [p.reference_s for p in points if p.reference_s > 0]
    return sum(readings) / len(readings) if readings else 0.0


def profile_reference(profile: dict[str, Any]) -> float:
    """The reference step time a profile was calibrated at (0.0: the server did not time one)."""
    record = profile.get(SPEED_KEY) or {}
    return float(record.get("reference_step_s", 0.0))


def speed_factor(profile: dict[str, Any], steps: Sequence[MeasuredPoint]) -> dict[str, float] | None:
    """How much slower than at calibration the machine ran `steps`, or None where either side has no reading."""
    calibrated = profile_reference(profile)
    measured, coverage = reference_time(steps)
    if calibrated <= 0 or measured <= 0:
        return None
    return {"calibration_reference_s": calibrated, "run_reference_s": measured,
            "steps_with_reading": coverage, "factor": measured / calibrated}


def at_speed(profile: dict[str, Any], factor: float) -> dict[str, Any]:
    """The profile on a machine whose reference step runs `factor` times slower: HOST_TERMS scaled."""
    return {**profile,
            "coefficients": {term: value * factor if term in HOST_TERMS else value
                             for term, value in profile["coefficients"].items()},
            SPEED_KEY: {**(profile.get(SPEED_KEY) or {}),
                        "reference_step_s": profile_reference(profile) * factor}}


@dataclass(frozen=True)
class SpeedTimeline:
    """How much slower than at calibration the machine ran over a run: `factors[i]` measured at `times_s[i]`.

    Times are seconds on the replay's clock (the run's first request arrived at
    0), increasing. Between two readings the factor is interpolated linearly;
    before the first and after the last it is the nearest reading.
    """

    times_s: np.ndarray
    factors: np.ndarray

    def at(self, t: float) -> float:
        """The factor at time `t`."""
        return float(np.interp(t, self.times_s, self.factors))


def speed_timeline(profile: dict[str, Any], steps: Sequence[MeasuredPoint], zero_s: float) -> SpeedTimeline | None:
    """The run's readings over the profile's, each placed at the start of the first step that carried it.

    A step carries the latest reading, taken between the step before and it (or
    while the engine was idle before it), so a new value marks a new reading.
    `zero_s` is the moment the run's first request arrived, on the clock of the
    steps' `start_s`. None where the profile or the steps have no readings, or the
    steps no start times (logs from before they were kept).
    """
    calibrated = profile_reference(profile)
    timed = sorted((p.start_s, p.reference_s) for p in steps if p.start_s > 0 and p.reference_s > 0)
    if calibrated <= 0 or not timed:
        return None
    readings = [timed[0]] + [now for before, now in zip(timed, timed[1:]) if now[1] != before[1]]
    starts, values = np.array(readings).T
    return SpeedTimeline(starts - zero_s, values / calibrated)


class AtMachineSpeed(StepTimeModel):
    """A calibrated model on a machine whose speed follows `timeline`: a replay of a measured run.

    A step that starts at t takes the model's time plus (timeline.at(t) - 1) times
    its host work (HOST_TERMS): at_speed at that moment, without rebuilding the
    model per step. Asked without a start time, it answers as calibrated.
    """

    def __init__(self, model: CalibratedModel, timeline: SpeedTimeline) -> None:
        self.model = model
        self.timeline = timeline
        self.name = model.name
        self.host = CalibratedModel(
            {**model.profile, "coefficients": {term: value if term in HOST_TERMS else 0.0
                                               for term, value in model.profile["coefficients"].items()}})

    def extra(self, t: float) -> float:
        """The share of host work a step starting at `t` adds: factor - 1."""
        return self.timeline.at(t) - 1.0

    def step_time(self, shape: BatchShape) -> float:
        return self.model.step_time(shape)

    def decode_window(self, num_decodes: int, decode_kv_sum: int, steps: int, decode_kv_max: int = 0
                      ) -> np.ndarray:
        return self.model.decode_window(num_decodes, decode_kv_sum, steps, decode_kv_max)

    def idle_penalty(self, idle_s: float) -> float:
        return self.model.idle_penalty(idle_s)

    def front_end_latency(self) -> Callable[[int], float] | None:
        # The API server is another process: its time is not scaled with the engine's.
        return self.model.front_end_latency()

    def step_time_at(self, shape: BatchShape, start_s: float) -> float:
        return self.model.step_time(shape) + self.extra(start_s) * self.host.step_time(shape)

    def idle_penalty_at(self, idle_s: float, start_s: float) -> float:
        return self.model.idle_penalty(idle_s) + self.extra(start_s) * self.host.idle_penalty(idle_s)

    def decode_window_at(self, num_decodes: int, decode_kv_sum: int, steps: int, decode_kv_max: int,
                         start_s: float) -> np.ndarray:
        """Step by step, each at its own start, with the additions the simulator's cumsum makes:
        the window stays bit-identical to stepping one iteration at a time."""
        durations = self.model.decode_window(num_decodes, decode_kv_sum, steps, decode_kv_max)
        host = self.host.decode_window(num_decodes, decode_kv_sum, steps, decode_kv_max)
        scaled = np.empty_like(durations)
        t = start_s
        for i in range(steps):
            scaled[i] = durations[i] + self.extra(t) * host[i]
            t = t + scaled[i]
        return scaled
