"""Map the device name a runtime reports (torch.cuda.get_device_name) to a catalog GPU."""

from __future__ import annotations

import re

# First match wins; patterns cover the names CUDA reports (e.g. "NVIDIA H100 80GB HBM3",
# "NVIDIA A100-SXM4-80GB", "NVIDIA GeForce RTX 4090").
_DEVICE_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"\bH100\b", "h100"),
    (r"\bH200\b", "h200"),
    (r"\bA100\b.*80", "a100-80gb"),
    (r"\bL40S\b", "l40s"),
    (r"\bB200\b", "b200"),
    (r"RTX\s*4090", "rtx-4090"),
    (r"RTX\s*PRO\s*6000", "rtx-pro-6000"),
)


def gpu_name_for_device(device_name: str) -> str | None:
    """The catalog name for a reported device name, or None when no entry matches."""
    for pattern, name in _DEVICE_PATTERNS:
        if re.search(pattern, device_name, re.IGNORECASE):
            return name
    return None
