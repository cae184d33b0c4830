"""CalibratedModel: the step-time model of a calibration profile, what the simulator runs."""

from __future__ import annotations

from collections.abc import Callable

from pathlib import Path
from typing import Any

import numpy as np

from kairos.calibration.profile import Profile, read_profile
from kairos.calibration.terms import TERMS, VARLEN, AttentionLayout, idle_wake, term_values
from kairos.engine.batch_shape import BatchShape
from kairos.models.arch import ModelArch
from kairos.perf.base import StepTimeModel


class CalibratedModel(StepTimeModel):
    """Step time from a calibration profile: the fitted combination of TERMS.

    Terms a profile does not list count zero. The result is whole-step wall time
    of the measured engine, host work included: never wrap it in WithOverheads.
    The idle_wake term is not a batch's: the simulator adds `idle_penalty` to the
    first step after an idle gap. `profile` is the profile's document (v1 files
    converted), what `at_speed` and the deployment read.
    """

    name = "calibrated"

    def __init__(self, profile: dict[str, Any] | str | Path) -> None:
        spec = Profile.read(profile) if isinstance(profile, dict) else read_profile(profile)
        self.profile: dict[str, Any] = spec.document()
        # Front-end time before the engine sees a request (measured through a server's API).
        self.request_latency_s = spec.request_latency_s
        self.request_latency_per_input_token_s = spec.request_latency_per_input_token_s
        self.coefficients: tuple[float, ...] = tuple(spec.coefficient(term) for term in TERMS)
        # Seconds per unit of each term, unpacked once: step_time runs for every simulated step.
        (self._per_step, self._per_prefill_token, self._per_attention_slot, self._per_chunk, self._per_decode,
         self._per_decode_slot, self._per_sampled, self._per_mixed_step, self._per_idle_wake) = self.coefficients
        self.layout = AttentionLayout.of_engine(spec.engine.model_dump())
        self.idle_time_constant_s = spec.idle_time_constant_s

    def front_end_latency(self) -> Callable[[int], float] | None:
        """The fitted front-end time, per request and per prompt token; None where none was measured."""
        per_request, per_token = self.request_latency_s, self.request_latency_per_input_token_s
        if per_request <= 0 and per_token <= 0:
            return None
        return lambda prompt_len: per_request + per_token * prompt_len

    def arch(self) -> ModelArch:
        """The architecture of the measured model, from the profile's HF-style config."""
        dtype_bytes = int(self.profile.get("dtype_bytes", 2))
        return ModelArch.from_hf_config(self.profile["model_config"], name=self.profile["model"],
                                        dtype_bytes=dtype_bytes)

    # ---- StepTimeModel -------------------------------------------------------------

    def step_time(self, shape: BatchShape) -> float:
        """Seconds for one step of any shape; decode-only steps agree bit for bit with decode_window."""
        # The decode part is written exactly as decode_window's elementwise expression.
        t = (self._per_step + self._per_decode * shape.num_decodes
             + self._per_decode_slot * self.layout.decode_slots(shape) + self._per_sampled * shape.num_sampled)
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
        # The layout's decode_slots of step i, as exact integers in float64: padded to the longest
        # where that is known, else the summed lengths (which grow by num_decodes a step).
        padded = decode_kv_max and self.layout.kind != VARLEN
        slots = num_decodes * (decode_kv_max + grown) if padded else decode_kv_sum + num_decodes * grown
        return (self._per_step + self._per_decode * num_decodes + self._per_decode_slot * slots
                + self._per_sampled * num_decodes)

    def idle_penalty(self, idle_s: float) -> float:
        """Seconds the first step after `idle_s` seconds idle takes beyond step_time (caches gone cold)."""
        return self._per_idle_wake * idle_wake(idle_s, self.idle_time_constant_s)

    # ---- explanation ---------------------------------------------------------------

    def breakdown(self, shape: BatchShape) -> dict[str, float]:
        """Seconds per fitted term for one step; the values sum to step_time (up to rounding)."""
        return {term: c * v for term, c, v in zip(TERMS, self.coefficients, term_values(shape, layout=self.layout))}
