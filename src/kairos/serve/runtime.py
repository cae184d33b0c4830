"""The torch runtime a measurement runs on: its CPU threads, and what a calibration profile records of it."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from kairos.serve.loader import ModelInfo


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run with torch's CPU threads set to `threads` (None: as they are); yields the count in effect.

    The setting is process-wide: it is restored on the way out.
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def runtime_facts(model: ModelInfo) -> dict[str, Any]:
    """The model's dtype and device, and torch's version, as a profile records them."""
    return {"dtype": str(model.dtype).removeprefix("torch."),
            "dtype_bytes": torch.empty((), dtype=model.dtype).element_size(),
            "device": str(model.device),
            "device_name": _device_name(model.device),
            "torch_version": torch.__version__}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"
