"""GPU specifications (peak FLOP/s, memory, bandwidth, interconnect) and a bundled catalog."""

from kairos.hardware.device_names import gpu_name_for_device
from kairos.hardware.gpu import GPU, list_gpus, load_gpu

__all__ = ["GPU", "gpu_name_for_device", "list_gpus", "load_gpu"]
