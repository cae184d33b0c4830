"""GPU specifications and the bundled catalog (`gpus.json`, one vendor source per entry)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from kairos.errors import unknown_name_error

GIB = 1 << 30


@dataclass(frozen=True, slots=True)
class GPU:
    """Peak capabilities of one GPU, in SI units (FLOP/s, bytes, bytes/s).

    FLOP/s are dense tensor-core peaks (no 2:4 sparsity); `fp8_flops` is 0 on parts
    without FP8 tensor cores. `interconnect_bw` is one direction per GPU: NVLink for
    SXM parts, the PCIe x16 link for PCIe cards.
    """

    name: str
    display_name: str
    bf16_flops: float
    fp8_flops: float
    memory_bytes: int
    memory_bw: float
    interconnect_bw: float
    interconnect: str
    source: str


@cache
def _catalog() -> tuple[dict[str, GPU], dict[str, str]]:
    """(name -> GPU, every accepted spelling -> name) from the bundled JSON."""
    raw = json.loads((resources.files("kairos.hardware") / "gpus.json").read_text())
    gpus: dict[str, GPU] = {}
    names: dict[str, str] = {}
    for entry in raw["gpus"]:
        gpu = GPU(
            name=entry["name"],
            display_name=entry["display_name"],
            bf16_flops=entry["bf16_tflops"] * 1e12,
            fp8_flops=entry["fp8_tflops"] * 1e12,
            # Vendors print GPU DRAM in binary gigabytes (an "80 GB" H100 has 80 GiB of HBM).
            memory_bytes=int(entry["memory_gb"] * GIB),
            memory_bw=entry["memory_bw_gbps"] * 1e9,
            interconnect_bw=entry["interconnect_gbps"] * 1e9,
            interconnect=entry["interconnect"],
            source=entry["source"],
        )
        gpus[gpu.name] = gpu
        for spelling in [gpu.name, *entry["aliases"]]:
            names[spelling] = gpu.name
    return gpus, names


def list_gpus() -> list[str]:
    """Catalog names, sorted."""
    return sorted(_catalog()[0])


def load_gpu(name: str) -> GPU:
    """Look up a GPU by catalog name or alias (case-insensitive)."""
    gpus, names = _catalog()
    key = names.get(name.lower())
    if key is None:
        raise unknown_name_error("GPU", name, list_gpus())
    return gpus[key]
