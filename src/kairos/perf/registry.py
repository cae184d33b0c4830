"""Step-time models by name, as a scenario's `perf.model` picks them."""

from __future__ import annotations

from dataclasses import fields

from kairos.errors import KairosError, unknown_name_error
from kairos.hardware.gpu import GPU
from kairos.models.arch import ModelArch
from kairos.perf.base import StepTimeModel
from kairos.perf.roofline import RooflineModel, RooflineParams

PERF_MODELS = ("roofline",)


def make_step_time_model(name: str, model: ModelArch, gpu: GPU, tp: int,
                         roofline: dict[str, float] | None = None) -> StepTimeModel:
    """Build the step-time model `name` for `model` on `tp` GPUs of kind `gpu`."""
    if name == "roofline":
        return RooflineModel(model, gpu, tp, roofline_params(roofline or {}))
    raise unknown_name_error("step-time model", name, PERF_MODELS)


def roofline_params(overrides: dict[str, float]) -> RooflineParams:
    known = {f.name for f in fields(RooflineParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise KairosError(f"unknown roofline parameter '{unknown[0]}': known: {', '.join(sorted(known))}")
    return RooflineParams(**overrides)
