"""GPU catalog: completeness, units, sources and name resolution."""

from __future__ import annotations

import pytest

from kairos.errors import KairosError
from kairos.hardware import list_gpus, load_gpu

REQUIRED = {"h100", "h200", "a100-80gb", "l40s", "b200", "rtx-4090", "rtx-pro-6000"}


def test_catalog_holds_the_required_gpus() -> None:
    assert REQUIRED <= set(list_gpus())


@pytest.mark.parametrize("name", list_gpus())
def test_every_gpu_is_complete_and_cites_a_vendor_source(name: str) -> None:
    gpu = load_gpu(name)
    assert gpu.display_name.startswith("NVIDIA")
    assert "http" in gpu.source and "NVIDIA" in gpu.source
    assert gpu.bf16_flops > 1e14 and gpu.fp8_flops >= 0
    assert gpu.memory_bytes >= 24 * 2**30 and gpu.memory_bw > 5e11 and gpu.interconnect_bw > 1e10
    assert gpu.interconnect.startswith(("nvlink", "pcie"))


def test_h100_uses_dense_figures_and_one_direction_of_nvlink() -> None:
    gpu = load_gpu("h100")
    assert gpu.bf16_flops == pytest.approx(989.4e12)
    assert gpu.fp8_flops == pytest.approx(1979e12, rel=1e-3)
    assert gpu.memory_bytes == 80 * 2**30
    assert gpu.memory_bw == pytest.approx(3.35e12)
    assert gpu.interconnect_bw == pytest.approx(450e9)


@pytest.mark.parametrize(
    ("alias", "name"), [("H100-SXM", "h100"), ("a100", "a100-80gb"), ("4090", "rtx-4090"), ("hgx-b200", "b200")]
)
def test_aliases_resolve(alias: str, name: str) -> None:
    assert load_gpu(alias).name == name


def test_unknown_gpu_suggests_close_matches() -> None:
    with pytest.raises(KairosError, match=r"unknown GPU 'h1000': did you mean h100"):
        load_gpu("h1000")


def test_reported_device_names_map_to_catalog_gpus() -> None:
    from kairos.hardware import gpu_name_for_device

    assert gpu_name_for_device("NVIDIA GeForce RTX 4090") == "rtx-4090"
    assert gpu_name_for_device("NVIDIA H100 80GB HBM3") == "h100"
    assert gpu_name_for_device("NVIDIA A100-SXM4-80GB") == "a100-80gb"
    assert gpu_name_for_device("Tesla T4") is None
