"""Step-time models (how long one engine step takes) and GPU memory sizing."""

from kairos.perf.base import StepTimeModel
from kairos.perf.kernels import KernelModel, covered_gpus, kernel_coverage
from kairos.perf.memory import activation_bytes_per_token, kv_cache_blocks, reserved_bytes
from kairos.perf.roofline import RooflineModel, RooflineParams

__all__ = [
    "KernelModel",
    "RooflineModel",
    "RooflineParams",
    "StepTimeModel",
    "activation_bytes_per_token",
    "covered_gpus",
    "kernel_coverage",
    "kv_cache_blocks",
    "reserved_bytes",
]
