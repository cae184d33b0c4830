"""TransferLink: shared bandwidth (processor sharing) and latency, against hand-computed times and a reference."""

from __future__ import annotations

import random

import pytest

from kairos.cluster import TransferLink
from kairos.hardware import load_link


def _drain(link: TransferLink) -> list[tuple[float, str]]:
    """Run the link until idle, the way an event loop would."""
    done = []
    while (nxt := link.next_completion()) is not None:
        done += link.advance(nxt[0])
    return done


def test_one_transfer_takes_latency_plus_bytes_over_bandwidth() -> None:
    link = TransferLink(bandwidth=100.0, latency_s=0.5)
    link.start("a", 300.0, t=2.0)
    assert link.next_completion() == (5.5, "a")
    assert link.advance(5.4) == []
    assert link.remaining_bytes("a") == pytest.approx(0.0)  # drained at 5.0, arriving at 5.5
    assert link.advance(5.5) == [(5.5, "a")]
    assert link.next_completion() is None and link.in_flight == 0


def test_catalog_link_alone_matches_its_transfer_time() -> None:
    ndr = load_link("ib-ndr")
    link = TransferLink.for_link(ndr)
    link.start(1, 50e6, t=0.0)
    assert link.next_completion() == (pytest.approx(ndr.transfer_time(50e6)), 1)


def test_two_transfers_started_together_share_the_bandwidth() -> None:
    link = TransferLink(bandwidth=100.0, latency_s=0.25)
    link.start("small", 100.0, t=0.0)
    link.start("big", 300.0, t=0.0)
    # 50 bytes/s each until small's 100 bytes are out at t=2; big's last 200 bytes then go at 100/s.
    assert _drain(link) == [(2.25, "small"), (4.25, "big")]


def test_equal_transfers_finish_together_in_start_order() -> None:
    link = TransferLink(bandwidth=100.0)
    link.start("a", 100.0, t=0.0)
    link.start("b", 100.0, t=0.0)
    assert link.advance(2.0) == [(2.0, "a"), (2.0, "b")]


def test_a_transfer_starting_mid_flight_slows_the_running_one() -> None:
    link = TransferLink(bandwidth=100.0, latency_s=0.5)
    link.start("a", 300.0, t=0.0)
    assert link.next_completion() == (3.5, "a")
    link.start("b", 50.0, t=1.0)  # a has 200 left; both at 50/s until b's 50 bytes are out at t=2
    assert link.remaining_bytes("a") == 200.0
    link.advance(1.5)
    assert (link.remaining_bytes("a"), link.remaining_bytes("b")) == (175.0, 25.0)
    assert link.next_completion() == (2.5, "b")
    # a then has 150 left at 100/s: drained at 3.5, delayed by exactly b's 50 bytes / 100 bytes/s.
    assert _drain(link) == [(2.5, "b"), (4.0, "a")]


def test_zero_bytes_complete_after_the_latency() -> None:
    link = TransferLink(bandwidth=100.0, latency_s=0.5)
    link.start("big", 1000.0, t=0.0)
    link.start("empty", 0.0, t=1.0)
    assert link.next_completion() == (1.5, "empty")


def test_completion_times_do_not_move_when_the_link_is_advanced_in_between() -> None:
    link = TransferLink(bandwidth=3.0, latency_s=0.1)
    for i, size in enumerate((7.0, 11.0, 13.0)):
        link.start(i, size, t=0.1 * i)
    expected = link.next_completion()
    for t in (0.37, 0.91, 1.234, 2.5):
        assert link.advance(t) == []
        assert link.next_completion() == expected


def _reference(starts: list[tuple[float, float]], bandwidth: float, latency: float) -> list[float]:
    """Completion times by the textbook method: every remaining size updated at every event."""
    remaining: dict[int, float] = {}
    drained = [0.0] * len(starts)
    now, i = 0.0, 0
    while i < len(starts) or remaining:
        rate = bandwidth / len(remaining) if remaining else 0.0
        drain_in = min(remaining.values()) / rate if remaining else float("inf")
        next_start = starts[i][0] if i < len(starts) else float("inf")
        t = min(now + drain_in, next_start)
        for k in remaining:
            remaining[k] -= (t - now) * rate
        now = t
        for k in [k for k, left in remaining.items() if left <= 1e-9]:
            drained[k] = now
            del remaining[k]
        while i < len(starts) and starts[i][0] <= now:
            remaining[i] = starts[i][1]
            i += 1
    return [d + latency for d in drained]


@pytest.mark.parametrize("seed", range(5))
def test_matches_the_reference_on_random_transfers(seed: int) -> None:
    rng = random.Random(seed)
    t, starts = 0.0, []
    for _ in range(60):
        t += rng.expovariate(2.0)
        starts.append((t, rng.uniform(1.0, 400.0)))
    link = TransferLink(bandwidth=250.0, latency_s=0.01)
    done: list[tuple[float, int]] = []
    for i, (at, size) in enumerate(starts):
        while (nxt := link.next_completion()) is not None and nxt[0] <= at:
            done += link.advance(nxt[0])
        link.start(i, size, at)
    done += _drain(link)
    assert sorted(i for _, i in done) == list(range(len(starts)))  # each completes exactly once
    assert [when for when, _ in done] == sorted(when for when, _ in done)
    expected = _reference(starts, 250.0, 0.01)
    for when, i in done:
        assert when == pytest.approx(expected[i], abs=1e-9)


def test_bytes_are_conserved() -> None:
    rng = random.Random(7)
    link = TransferLink(bandwidth=1e9, latency_s=2e-6)
    sizes = [rng.uniform(1e6, 5e8) for _ in range(40)]
    t, completed = 0.0, set()
    for i, size in enumerate(sizes):
        t += rng.uniform(0.0, 0.2)
        while (nxt := link.next_completion()) is not None and nxt[0] <= t:
            completed.update(k for _, k in link.advance(nxt[0]))
        link.start(i, size, t)
        assert link.bytes_moved == pytest.approx(link.bandwidth * link.busy_s, rel=1e-9)
        pending = sum(link.remaining_bytes(k) for k in range(i + 1) if k not in completed)
        assert link.bytes_moved + pending == pytest.approx(sum(sizes[: i + 1]), rel=1e-9)
    assert completed  # the check above ran with transfers both done and in flight
    _drain(link)
    assert link.bytes_moved == pytest.approx(sum(sizes), rel=1e-12)
    assert link.busy_s * link.bandwidth == pytest.approx(sum(sizes), rel=1e-9)


def test_misuse_is_refused() -> None:
    link = TransferLink(bandwidth=10.0)
    link.start("a", 10.0, t=1.0)
    with pytest.raises(ValueError, match="already in flight"):
        link.start("a", 5.0, t=1.0)
    with pytest.raises(ValueError, match="backwards"):
        link.advance(0.5)
    with pytest.raises(ValueError, match="zero or more bytes"):
        link.start("b", -1.0, t=1.0)
    with pytest.raises(ValueError, match="positive"):
        TransferLink(bandwidth=0.0)
