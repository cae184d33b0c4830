"""Link catalog: published figures, sources, name resolution and custom links."""

from __future__ import annotations

import pytest

from kairos.errors import KairosError
from kairos.hardware import list_gpus, list_links, load_gpu, load_link, resolve_link

# One direction of one GPU's link, bytes/s: half the bidirectional NVLink/PCIe figure, line rate / 8.
PUBLISHED = {
    "nvlink4": 450e9,
    "nvlink5": 900e9,
    "ib-ndr": 50e9,
    "ib-hdr": 25e9,
    "roce-400g": 50e9,
    "roce-200g": 25e9,
    "pcie5": 64e9,
    "eth-100g": 12.5e9,
    "eth-25g": 3.125e9,
}


@pytest.mark.parametrize(("name", "bandwidth"), PUBLISHED.items())
def test_catalog_holds_the_published_bandwidths(name: str, bandwidth: float) -> None:
    assert load_link(name).bandwidth == pytest.approx(bandwidth)


@pytest.mark.parametrize("name", list_links())
def test_every_link_is_complete_and_cites_a_source(name: str) -> None:
    link = load_link(name)
    assert link.name == name and link.description
    assert "http" in link.source
    assert link.bandwidth >= 1e9
    assert 1e-7 <= link.latency_s <= 1e-4  # one-way hardware latency: microseconds


def test_every_gpu_interconnect_is_a_catalog_link_of_the_same_bandwidth() -> None:
    for name in list_gpus():
        gpu = load_gpu(name)
        assert load_link(gpu.interconnect).bandwidth == pytest.approx(gpu.interconnect_bw), name


@pytest.mark.parametrize(
    ("spelling", "name"),
    [("NVLink 4", "nvlink4"), ("InfiniBand NDR", "ib-ndr"), ("IB_HDR", "ib-hdr"), ("100GbE", "eth-100g"),
     ("PCIe Gen5", "pcie5"), ("RoCE-400GbE", "roce-400g")],
)
def test_names_are_normalised(spelling: str, name: str) -> None:
    assert load_link(spelling).name == name


def test_unknown_link_is_one_line_with_close_matches() -> None:
    with pytest.raises(KairosError, match=r"^unknown link 'nvlink6': did you mean nvlink") as err:
        load_link("nvlink6")
    assert "\n" not in str(err.value)


def test_transfer_time_is_latency_plus_bytes_over_bandwidth() -> None:
    link = load_link("ib-ndr")
    assert link.transfer_time(50e6) == pytest.approx(1e-6 + 1e-3)


def test_custom_link_from_a_scenario_dict() -> None:
    link = resolve_link({"bandwidth_gbps": 25, "latency_us": 300})
    assert (link.name, link.bandwidth, link.latency_s) == ("custom", 25e9, pytest.approx(300e-6))
    assert resolve_link({"bandwidth_gbps": 10, "name": "lab"}).latency_s == 0.0
    assert resolve_link("nvlink4") is load_link("nvlink4")


@pytest.mark.parametrize(
    ("spec", "message"),
    [({"latency_us": 2}, "needs bandwidth_gbps"),
     ({"bandwidth": 50}, "unknown key bandwidth"),
     ({"bandwidth_gbps": 0}, "bandwidth must be positive"),
     ({"bandwidth_gbps": 50, "latency_us": -1}, "latency must be zero or more"),
     ({"bandwidth_gbps": "fast"}, "must be numbers")],
)
def test_bad_custom_links_are_one_line_errors(spec: dict, message: str) -> None:
    with pytest.raises(KairosError, match=message) as err:
        resolve_link(spec)
    assert "\n" not in str(err.value)
