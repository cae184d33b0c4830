"""Layer-by-layer overlap of a KV transfer with its prefill: the closed form against a layer-by-layer pipeline."""

from __future__ import annotations

import random

import pytest

from kairos.cluster import TransferLink, bytes_after_prefill, exposed_transfer_s
from kairos.hardware import Link

LINK = Link(name="test", bandwidth=100.0, latency_s=0.5)


def _pipeline_end(nbytes: float, bandwidth: float, prefill_s: float, num_layers: int) -> float:
    """When the sender finishes, sending each layer's KV once computed and the link is free."""
    free = 0.0
    for k in range(1, num_layers + 1):
        free = max(free, k * prefill_s / num_layers) + nbytes / num_layers / bandwidth
    return free


def test_without_overlap_everything_goes_after_the_prefill() -> None:
    assert exposed_transfer_s(1000.0, LINK, prefill_s=4.0, num_layers=5, overlap=False) == 0.5 + 10.0


def test_overlap_by_hand() -> None:
    # 1000 bytes over 5 layers in a 4 s prefill: 320 bytes leave during the first 4 layers' 3.2 s.
    assert bytes_after_prefill(1000.0, 100.0, prefill_s=4.0, num_layers=5) == pytest.approx(680.0)
    assert exposed_transfer_s(1000.0, LINK, prefill_s=4.0, num_layers=5) == pytest.approx(0.5 + 6.8)


def test_edge_cases() -> None:
    assert bytes_after_prefill(1000.0, 100.0, prefill_s=4.0, num_layers=1) == 1000.0  # nothing to overlap with
    assert bytes_after_prefill(1000.0, 100.0, prefill_s=0.0, num_layers=40) == 1000.0
    assert bytes_after_prefill(1000.0, 100.0, prefill_s=1e6, num_layers=40) == 25.0  # the last layer is left
    assert exposed_transfer_s(0.0, LINK, prefill_s=1.0, num_layers=4) == 0.5  # the latency is still paid
    with pytest.raises(ValueError, match="at least one layer"):
        bytes_after_prefill(1.0, 1.0, 1.0, 0)


@pytest.mark.parametrize("seed", range(3))
def test_closed_form_matches_the_pipeline_and_never_ends_before_the_prefill(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        nbytes, bandwidth = rng.uniform(0.0, 1e9), rng.uniform(1e8, 1e11)
        prefill_s, layers = rng.choice([0.0, rng.uniform(0.0, 0.5)]), rng.randint(1, 128)
        link = Link(name="r", bandwidth=bandwidth, latency_s=rng.uniform(0.0, 1e-3))
        left = bytes_after_prefill(nbytes, bandwidth, prefill_s, layers)
        end = _pipeline_end(nbytes, bandwidth, prefill_s, layers)
        assert prefill_s + left / bandwidth == pytest.approx(end, rel=1e-9, abs=1e-12)
        exposed = exposed_transfer_s(nbytes, link, prefill_s, layers)
        assert link.latency_s + nbytes / layers / bandwidth <= exposed * (1 + 1e-12)  # the last layer waits
        assert exposed <= exposed_transfer_s(nbytes, link, prefill_s, layers, overlap=False)


def test_the_remainder_competes_on_a_transfer_link() -> None:
    left = bytes_after_prefill(1000.0, LINK.bandwidth, prefill_s=4.0, num_layers=5)
    link = TransferLink.for_link(LINK)
    link.start("r", left, t=4.0)  # alone, it ends exactly as the closed form says
    assert link.next_completion() == (pytest.approx(4.0 + exposed_transfer_s(1000.0, LINK, 4.0, 5)), "r")
