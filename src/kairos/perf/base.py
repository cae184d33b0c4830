"""The step-time model contract: how long one engine step takes for a batch shape."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kairos.engine.batch_shape import BatchShape


class StepTimeModel:
    """Predicts the wall time in seconds of engine steps; every step-time model derives from it.

    `decode_window(n, kv_sum, k, kv_max)` returns the durations of k consecutive
    pure-decode steps of n requests where step i (0-based) has decode_kv_sum =
    kv_sum + i * n and decode_kv_max = kv_max + i (kv_max 0: not known). The
    engine uses it for every pure-decode step, a single one included, so that
    the many-steps-at-once fast path is bit-identical to stepping one iteration
    at a time. `step_time` is used for steps that carry
    prefill work. `idle_penalty(idle_s)` is what the first step after `idle_s`
    seconds of idleness takes beyond that (0 where a model does not know it).

    The simulator asks through the `*_at` variants, which also get when the step
    starts (seconds of simulated time): a model of a machine whose speed changes
    over a run overrides them; by default the time does not matter.
    """

    name: str

    def step_time(self, shape: BatchShape) -> float:
        raise NotImplementedError

    def decode_window(self, num_decodes: int, decode_kv_sum: int, steps: int, decode_kv_max: int = 0
                      ) -> np.ndarray:
        raise NotImplementedError

    def idle_penalty(self, idle_s: float) -> float:
        raise NotImplementedError

    def step_time_at(self, shape: BatchShape, start_s: float) -> float:
        """step_time of a step that starts at `start_s`."""
        return self.step_time(shape)

    def decode_window_at(self, num_decodes: int, decode_kv_sum: int, steps: int, decode_kv_max: int,
                         start_s: float) -> np.ndarray:
        """decode_window of steps run back to back, the first starting at `start_s`."""
        return self.decode_window(num_decodes, decode_kv_sum, steps, decode_kv_max)

    def idle_penalty_at(self, idle_s: float, start_s: float) -> float:
        """idle_penalty of a step due to start at `start_s` (before the penalty delays it)."""
        return self.idle_penalty(idle_s)

    def front_end_latency(self) -> Callable[[int], float] | None:
        """The API front-end's time before the engine sees a request of n prompt tokens, where the
        model measured it through a server (a calibrated profile); None: the model knows none."""
        return None


class ComposedStepModel(StepTimeModel):
    """A step time composed as token work + sampled work + attention per prefill chunk + decode attention.

    Subclasses give the parts; the composition (and the bit-identity of
    `decode_window` with `step_time` on decode-only steps) lives here once.
    `_decode_attention_many` must evaluate `_decode_attention` elementwise.
    """

    def _base_time(self, tokens: int, sampled: int) -> float:
        raise NotImplementedError

    def idle_penalty(self, idle_s: float) -> float:
        """GPU kernel models know nothing of cold caches after an idle gap."""
        return 0.0

    def _prefill_attention(self, new: int, ctx: int) -> float:
        raise NotImplementedError

    def _decode_attention(self, num_decodes: int, kv_sum: int) -> float:
        raise NotImplementedError

    def _decode_attention_many(self, num_decodes: int, kv_sums: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def step_time(self, shape: BatchShape) -> float:
        """Seconds for one step of any shape (decode-only steps agree with decode_window)."""
        t = self._base_time(shape.num_tokens, shape.num_sampled)
        for new, ctx in zip(shape.prefill_new, shape.prefill_ctx):
            t += self._prefill_attention(new, ctx)
        if shape.num_decodes:
            t += self._decode_attention(shape.num_decodes, shape.decode_kv_sum)
        return t

    def decode_window(self, num_decodes: int, decode_kv_sum: int, steps: int, decode_kv_max: int = 0
                      ) -> np.ndarray:
        """Seconds for each of `steps` pure-decode steps; step i attends to kv_sum + i * n tokens.

        GPU kernels read each request's own KV length: the longest one does not matter here.
        """
        base = self._base_time(num_decodes, num_decodes)
        kv_sums = decode_kv_sum + num_decodes * np.arange(steps, dtype=np.float64)
        return base + self._decode_attention_many(num_decodes, kv_sums)

    def _attention_breakdown(self, shape: BatchShape) -> dict[str, float]:
        """The attention entries of a breakdown: all prefill chunks, then the decodes."""
        return {
            "attention_prefill": sum(self._prefill_attention(new, ctx)
                                     for new, ctx in zip(shape.prefill_new, shape.prefill_ctx)),
            "attention_decode": (self._decode_attention(shape.num_decodes, shape.decode_kv_sum)
                                 if shape.num_decodes else 0.0),
        }
