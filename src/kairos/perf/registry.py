"""Step-time models by name, as a scenario's `perf.model` picks them."""

from __future__ import annotations

from dataclasses import dataclass, fields

from kairos.errors import KairosError, unknown_name_error
from kairos.hardware.gpu import GPU
from kairos.models.arch import ModelArch
from kairos.perf.base import StepTimeModel
from kairos.perf.kernels import KernelModel, kernel_coverage
from kairos.perf.overheads import EngineOverheads, WithOverheads
from kairos.perf.roofline import RooflineModel, RooflineParams

PERF_MODELS = ("roofline", "kernels", "auto")


@dataclass(frozen=True, slots=True)
class ResolvedPerf:
    """The step-time model built for a scenario and the name of the one that runs."""

    model: StepTimeModel
    used: str  # "roofline" or "kernels" (what `auto` resolved to)


def make_step_time_model(name: str, model: ModelArch, gpu: GPU, tp: int,
                         roofline: dict[str, float] | None = None,
                         overheads: dict[str, float] | None = None) -> ResolvedPerf:
    """Build the step-time model `name` for `model` on `tp` GPUs of kind `gpu`, with engine overheads.

    `auto` uses the measured kernel database where it covers the GPU (and the
    `kernels` extra is installed), the roofline elsewhere.
    """
    if name not in PERF_MODELS:
        raise unknown_name_error("step-time model", name, PERF_MODELS)
    used = name
    if name == "auto":
        used = "kernels" if kernel_coverage(gpu.name) else "roofline"
    if used == "kernels":
        inner: StepTimeModel = KernelModel(model, gpu, tp)
    else:
        inner = RooflineModel(model, gpu, tp, _dataclass_from(RooflineParams, roofline, "roofline parameter"))
    return ResolvedPerf(WithOverheads(inner, _dataclass_from(EngineOverheads, overheads, "engine overhead")), used)


def _dataclass_from(cls, overrides: dict[str, float] | None, what: str):
    overrides = overrides or {}
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise KairosError(f"unknown {what} '{unknown[0]}': known: {', '.join(sorted(known))}")
    return cls(**overrides)
