"""GPU specifications (peak FLOP/s, memory, bandwidth, interconnect) and a bundled catalog."""

from kairos.hardware.gpu import GPU, list_gpus, load_gpu

__all__ = ["GPU", "list_gpus", "load_gpu"]
