"""Process-level tuning of the CPU engine: glibc's allocator and transparent huge pages (Linux only)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys

import torch

logger = logging.getLogger("kairos.serve")

# mallopt parameters (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Activations of a 512-token step reach a few MiB per tensor: above glibc's default mmap
# threshold, each would be mapped and unmapped (and its pages faulted in) every step.
MMAP_THRESHOLD_BYTES = 1 << 30
_MADV_HUGEPAGE = 14
_HUGE_PAGE = 2 << 20


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


@functools.cache
def tune_malloc() -> bool:
    """Keep glibc from returning large freed buffers to the kernel (once per process); False where not glibc."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    ok = libc.mallopt(_M_TRIM_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and ok
    if not ok:
        logger.debug("mallopt refused the thresholds")
    return ok


def advise_huge_pages(tensor: torch.Tensor) -> bool:
    """Ask for transparent huge pages under a CPU tensor's storage (before it is touched); False if refused."""
    libc = _libc()
    if libc is None or tensor.device.type != "cpu":
        return False
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    aligned = -(-start // _HUGE_PAGE) * _HUGE_PAGE  # madvise wants whole pages; huge ones pay off only whole
    length = (end - aligned) // _HUGE_PAGE * _HUGE_PAGE
    if length <= 0:
        return False
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc.madvise(aligned, length, _MADV_HUGEPAGE) == 0
