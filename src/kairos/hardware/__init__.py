"""GPU specifications (peak FLOP/s, memory, bandwidth, interconnect) and links between GPUs, with bundled catalogs."""

from kairos.hardware.device_names import gpu_name_for_device
from kairos.hardware.gpu import GPU, list_gpus, load_gpu
from kairos.hardware.link import Link, list_links, load_link, resolve_link

__all__ = [
    "GPU", "Link", "gpu_name_for_device", "list_gpus", "list_links", "load_gpu", "load_link", "resolve_link",
]
