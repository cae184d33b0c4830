"""Which attention implementation an engine runs: the native varlen kernels or padded SDPA."""

from __future__ import annotations

import functools
import logging

import torch

from kairos.errors import KairosError
from kairos.serve.native.build import NativeKernels, NativeUnavailable, load_kernels

logger = logging.getLogger("kairos.serve")

ATTENTION_CHOICES = ("auto", "native", "sdpa")
# What /kairos/engine and calibration profiles call each: how attention's cost grows.
LAYOUT_NAMES = {"native": "varlen", "sdpa": "padded"}


def _native_or_reason(device: torch.device, dtype: torch.dtype) -> NativeKernels | str:
    if device.type != "cpu":
        return f"the native kernels run on CPU only, not {device.type}"
    if dtype != torch.float32:
        return f"the native kernels run float32 only, not {str(dtype).removeprefix('torch.')}"
    kernels = load_kernels()
    return str(kernels) if isinstance(kernels, NativeUnavailable) else kernels


@functools.cache
def _warn_once(reason: str) -> None:
    logger.warning("native attention unavailable (%s): using SDPA", reason)


def select_attention(requested: str, device: torch.device, dtype: torch.dtype) -> NativeKernels | None:
    """The native kernels for "native" (a KairosError if they cannot run) and "auto" where they run; else None (SDPA)."""
    if requested not in ATTENTION_CHOICES:
        raise KairosError(f"unknown attention '{requested}': use {', '.join(ATTENTION_CHOICES)}")
    if requested == "sdpa":
        return None
    found = _native_or_reason(device, dtype)
    if isinstance(found, NativeKernels):
        return found
    if requested == "native":
        raise KairosError(f"--attention native: {found}; use --attention sdpa or auto")
    if device.type == "cpu":  # elsewhere SDPA is simply the implementation
        _warn_once(found)
    return None
