"""Engine overheads: host time per step that GPU kernel time does not include.

A step-time model (roofline or measured kernels) predicts GPU time. A real engine
also spends time on the CPU each step, and how much of it stays on the critical
path depends on the kind of step. vLLM V1 (the reference here) replays a full CUDA
graph for a pure-decode batch, but runs a step carrying prefill with piecewise
graphs, launching attention eagerly between the captured pieces, and builds
varlen attention metadata for it. With async scheduling (on by default since vLLM
0.11), scheduling the next step overlaps the current one.

Every value is a named constant; none is fitted to a measured run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kairos.engine.batch_shape import BatchShape
from kairos.perf.base import StepTimeModel


@dataclass(frozen=True, slots=True)
class EngineOverheads:
    """Seconds added to each step's GPU time."""

    # Pure-decode step: CUDA-graph replay, input copy and the sampler's device-to-host
    # sync stay on the critical path; scheduling overlaps (async scheduling). vLLM's
    # V1 announcement and its async-scheduling PR report host gaps between decode
    # steps of a few hundred microseconds with CUDA graphs: take 0.3 ms.
    decode_step_s: float = 0.3e-3
    # Step with prefill: piecewise CUDA graphs leave one eager attention launch plus
    # its metadata per layer (about 10-20 us each on the host), and the varlen
    # attention metadata is rebuilt. Take 1 ms (about 32 layers x 20 us + 0.3 ms).
    mixed_step_s: float = 1.0e-3
    # Per request in the batch: input preparation (block-table rows, positions, slot
    # mapping) and output processing grow with the batch; about 2 us per request in
    # vLLM V1's numpy-based input preparation.
    per_request_s: float = 2e-6


class WithOverheads(StepTimeModel):
    """A step-time model plus engine overheads; keeps the decode-window bit identity."""

    def __init__(self, inner: StepTimeModel, overheads: EngineOverheads = EngineOverheads()) -> None:
        self.inner = inner
        self.overheads = overheads
        self.name = inner.name

    def step_time(self, shape: BatchShape) -> float:
        return self.inner.step_time(shape) + self._host_time(shape)

    def decode_window(self, num_decodes: int, decode_kv_sum: int, steps: int, decode_kv_max: int = 0
                      ) -> np.ndarray:
        host = self.overheads.decode_step_s + self.overheads.per_request_s * num_decodes
        return self.inner.decode_window(num_decodes, decode_kv_sum, steps, decode_kv_max) + host

    def rank_step_time(self, shapes: list[BatchShape]) -> float:
        """A lockstep step of data-parallel ranks: the ranks' hosts work in parallel, so the
        slowest one's host time adds to the GPU time of the whole step."""
        return self.inner.rank_step_time(shapes) + max(self._host_time(s) for s in shapes)  # type: ignore[attr-defined]

    def idle_penalty(self, idle_s: float) -> float:
        return self.inner.idle_penalty(idle_s)

    def breakdown(self, shape: BatchShape) -> dict[str, float]:
        """Per-operator GPU time from the inner model plus the host overhead."""
        parts = dict(self.inner.breakdown(shape))  # type: ignore[attr-defined]
        parts["host_overhead"] = self._host_time(shape)
        return parts

    def _host_time(self, shape: BatchShape) -> float:
        o = self.overheads
        base = o.mixed_step_s if shape.prefill_new else o.decode_step_s
        return base + o.per_request_s * (len(shape.prefill_new) + shape.num_decodes)
