"""Step-time models by name, as a scenario's `perf.model` picks them.

It names perf's models and calibration's fitted one, so it sits above both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

from kairos.calibration.model import CalibratedModel
from kairos.errors import KairosError
from kairos.hardware.gpu import GPU
from kairos.models.arch import ModelArch
from kairos.perf.aiconfigurator import SYSTEMS as AICONFIGURATOR_SYSTEMS
from kairos.perf.aiconfigurator import AiconfiguratorModel
from kairos.perf.base import StepTimeModel
from kairos.perf.kernels import KernelModel, kernel_coverage
from kairos.perf.kernels.database import systems_root
from kairos.perf.overheads import EngineOverheads, WithOverheads
from kairos.perf.parallel import Parallelism
from kairos.perf.roofline import RooflineModel, RooflineParams
from kairos.registry import Registry, normalise

# Weight precisions the measured kernel composition (`kernels`) models.
KERNEL_WEIGHTS = ("bf16", "fp16", "fp8", "fp8_block")
# `calibrated:PATH` names a profile written by `kairos calibrate`.
CALIBRATED_PREFIX = "calibrated:"

# A GPU-time model of a model on a GPU and parallelism, given the scenario's roofline overrides.
StepTimeBuilder = Callable[[ModelArch, GPU, Parallelism, dict[str, float] | None], StepTimeModel]
STEP_TIME_MODELS: Registry[StepTimeBuilder] = Registry("step-time model")


@STEP_TIME_MODELS.register("roofline")
def _roofline(model: ModelArch, gpu: GPU, parallel: Parallelism, roofline: dict[str, float] | None
              ) -> StepTimeModel:
    """Each operator costs max(compute time, memory time) at the GPU's peak figures."""
    return RooflineModel(model, gpu, parallel.tp, _dataclass_from(RooflineParams, roofline, "roofline parameter"))


@STEP_TIME_MODELS.register("kernels")
def _kernels(model: ModelArch, gpu: GPU, parallel: Parallelism, roofline: dict[str, float] | None
             ) -> StepTimeModel:
    """Operators looked up in aiconfigurator-core's measured kernel database (the `kernels` extra)."""
    return KernelModel(model, gpu, parallel.tp)


@STEP_TIME_MODELS.register("aiconfigurator")
def _aiconfigurator(model: ModelArch, gpu: GPU, parallel: Parallelism, roofline: dict[str, float] | None
                    ) -> StepTimeModel:
    """aiconfigurator-core's forward-pass estimator: TP, DP, EP, quantized kernels (the `kernels` extra)."""
    return AiconfiguratorModel(model, gpu, parallel)


# Resolved here, not built: the report names the model `auto` picked.
STEP_TIME_MODELS.describe_form("auto", "kernels for a dense 16-bit or fp8 model where its database covers the "
                               "GPU, else aiconfigurator where that covers the GPU, else roofline.")
STEP_TIME_MODELS.describe_form(CALIBRATED_PREFIX + "PROFILE", "A profile from `kairos calibrate`: whole measured "
                               "steps, host time included.")


@dataclass(frozen=True, slots=True)
class ResolvedPerf:
    """The step-time model built for a scenario and the name of the one that runs."""

    model: StepTimeModel
    used: str  # "roofline", "kernels", "aiconfigurator" (what `auto` resolved to) or "calibrated"
    notes: tuple[str, ...] = ()  # where the model costs the deployment otherwise than it runs


def is_calibrated(name: str) -> bool:
    """Whether a perf name picks a calibration profile (`calibrated:PATH`)."""
    return name == "calibrated" or name.startswith(CALIBRATED_PREFIX)


def load_calibrated(name: str) -> CalibratedModel | None:
    """The model a `calibrated:PATH` perf name points at (profile loaded and checked), else None."""
    path = name[len(CALIBRATED_PREFIX):] if name.startswith(CALIBRATED_PREFIX) else ""
    return CalibratedModel(path) if path else None


def make_step_time_model(name: str, model: ModelArch, gpu: GPU | None, tp: int,
                         roofline: dict[str, float] | None = None,
                         overheads: dict[str, float] | None = None,
                         calibrated: CalibratedModel | None = None, parallel: Parallelism | None = None
                         ) -> ResolvedPerf:
    """Build the step-time model `name` for `model` on `tp` GPUs of kind `gpu`, with engine overheads.

    `auto` picks by what each covers and where it was closer to measured serving
    (`_auto`; both need the `kernels` extra), the roofline elsewhere. `calibrated:PATH` loads
    a profile of whole measured steps, host time included, so it gets no overheads
    (pass `calibrated` when the caller has loaded it already). `parallel` adds data
    and expert parallelism to `tp` (only `aiconfigurator` models an MoE model's
    lockstep ranks and expert all-to-all).
    """
    parallel = parallel or Parallelism(tp)
    if parallel.tp != tp:
        raise KairosError(f"tp {tp} and the parallelism's tp {parallel.tp} differ")
    if is_calibrated(name):
        used = "calibrated"
    else:
        used = _auto(model, gpu) if normalise(name) == "auto" else STEP_TIME_MODELS.canonical(name)
    if used != "aiconfigurator" and model.is_moe and (parallel.dp > 1 or parallel.ep):
        raise KairosError(f"--perf {name} models tensor parallelism only; an MoE model with data or expert "
                          "parallelism needs --perf aiconfigurator (lockstep ranks, expert all-to-all)")
    if used == "calibrated":
        path = name[len(CALIBRATED_PREFIX):]  # empty for a bare "calibrated"
        return ResolvedPerf(_calibrated(path, model, tp, roofline, overheads, calibrated), "calibrated")
    inner = STEP_TIME_MODELS.get(used)(model, gpu, parallel, roofline)
    return ResolvedPerf(WithOverheads(inner, _dataclass_from(EngineOverheads, overheads, "engine overhead")), used,
                        tuple(getattr(inner, "notes", ())))


def _auto(model: ModelArch, gpu: GPU) -> str:
    """For a dense 16-bit or fp8 model the measured kernel composition, where it covers the
    GPU; else aiconfigurator-core's estimator, where that covers the GPU; else the roofline.

    On the measured-silicon suite's development rows both were as close on dense models,
    and the composition simulates about 15 times faster (decode windows in numpy); on MoE
    models aiconfigurator-core was closer (docs/BENCHMARKS.md)."""
    if not model.is_moe and model.weights_dtype in KERNEL_WEIGHTS and kernel_coverage(gpu.name):
        return "kernels"
    if gpu.name in AICONFIGURATOR_SYSTEMS and systems_root() is not None:
        return "aiconfigurator"
    return "roofline"


def _calibrated(path: str, model: ModelArch, tp: int, roofline: dict[str, float] | None,
                overheads: dict[str, float] | None, calibrated: CalibratedModel | None) -> CalibratedModel:
    if not path and calibrated is None:
        raise KairosError("perf model 'calibrated' needs a profile: calibrated:PROFILE.json "
                          "(write one with `kairos calibrate`)")
    if roofline or overheads:
        raise KairosError("roofline parameters and engine overheads do not apply to a calibrated "
                          "profile: it measured whole steps, host time included")
    calibrated = calibrated or CalibratedModel(path)
    # A profile predicts the engine and model it measured, on one device: anything else
    # would be silently wrong rather than approximately right.
    if tp != 1:
        raise KairosError(f"{path} was measured on one device: run it with --tp 1, not {tp}")
    measured = calibrated.arch()
    if _cost_shape(measured) != _cost_shape(model):
        raise KairosError(f"{path} was measured on model '{measured.name}' ({_describe(measured)}), "
                          f"not '{model.name}' ({_describe(model)}): simulate the measured model "
                          "(its config is the profile's model_config) or calibrate this one")
    return calibrated


def _cost_shape(model: ModelArch) -> tuple[int | str, ...]:
    """The fields of an architecture that change step times."""
    return (model.hidden_size, model.num_layers, model.num_heads, model.num_kv_heads, model.head_dim,
            model.intermediate_size, model.vocab_size, model.num_experts, model.experts_per_token,
            model.moe_intermediate_size, model.num_shared_experts, model.shared_expert_intermediate_size,
            model.attention, model.kv_lora_rank, model.qk_rope_head_dim, model.num_dense_layers,
            model.num_sliding_layers, model.weights_dtype, model.quant_scope, model.kv_cache_dtype)


def _describe(model: ModelArch) -> str:
    return (f"hidden {model.hidden_size}, {model.num_layers} layers, vocab {model.vocab_size}, "
            f"{model.weights_dtype} weights, {model.kv_cache_dtype} KV cache")


def _dataclass_from(cls, overrides: dict[str, float] | None, what: str):
    overrides = overrides or {}
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise KairosError(f"unknown {what} '{unknown[0]}': known: {', '.join(sorted(known))}")
    return cls(**overrides)
