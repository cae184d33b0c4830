"""`TransferLink`: concurrent transfers over one link share its bandwidth equally, each paying the latency once."""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Hashable

from kairos.hardware import Link


class TransferLink:
    """One link between two pools, carrying concurrent transfers (processor sharing), in closed form.

    n transfers sending each move at bandwidth / n, so every start and every drain
    changes the others' rates. Between two such changes (an epoch) the state is
    linear in time: each sending transfer has received `served(t)` bytes since the
    link was last idle, and a transfer that started when it read s drains when it
    reaches s + bytes (its tag). Tags drain in order, so an event costs O(log n) and
    no transfer's remaining bytes are updated one by one. The state changes only at
    starts and drains, so a completion time, once computed, stays the same however
    often `advance` is called before it.

    The latency is a pipeline delay, not link time: a transfer's bytes flow from its
    start, and it completes `latency_s` after its last byte leaves, so alone it takes
    latency_s + bytes / bandwidth. Equal completion times go in start order.

    Times never go backwards. A start moves every pending completion, so an event loop
    must read `next_completion()` again after each `start` and drop the older entry.
    """

    def __init__(self, bandwidth: float, latency_s: float = 0.0) -> None:
        if not (math.isfinite(bandwidth) and bandwidth > 0):
            raise ValueError(f"bandwidth must be positive bytes/s, got {bandwidth}")
        if not (math.isfinite(latency_s) and latency_s >= 0):
            raise ValueError(f"latency must be zero or more seconds, got {latency_s}")
        self.bandwidth = bandwidth
        self.latency_s = latency_s
        self._now = 0.0
        self._epoch_t = 0.0  # the last start or drain while sending
        self._epoch_served = 0.0  # served(t) at _epoch_t
        self._seq = 0
        self._sizes: dict[Hashable, float] = {}  # every transfer not yet completed
        self._tags: dict[Hashable, float] = {}  # those still sending
        self._draining: list[tuple[float, int, Hashable]] = []  # heap of (tag, start order, id)
        self._arriving: deque[tuple[float, Hashable]] = deque()  # drained, waiting out the latency
        self._drained_bytes = 0.0
        self._busy_s = 0.0  # busy time before _epoch_t

    @classmethod
    def for_link(cls, link: Link) -> TransferLink:
        """An idle link with a catalog (or custom) link's bandwidth and latency."""
        return cls(link.bandwidth, link.latency_s)

    @property
    def now(self) -> float:
        """The time the link was last advanced to."""
        return self._now

    @property
    def in_flight(self) -> int:
        """Transfers started and not yet completed (sending, or waiting out the latency)."""
        return len(self._sizes)

    @property
    def sending(self) -> int:
        """Transfers whose bytes are still leaving: the n that share the bandwidth."""
        return len(self._draining)

    @property
    def busy_s(self) -> float:
        """Time up to now with at least one transfer sending."""
        return self._busy_s + (self._now - self._epoch_t if self._draining else 0.0)

    @property
    def bytes_moved(self) -> float:
        """Bytes that have left the sender up to now (bandwidth x busy time, up to rounding)."""
        if not self._tags:
            return self._drained_bytes
        served = self._served(self._now)
        partial = sum(self._sizes[tid] - max(0.0, tag - served) for tid, tag in self._tags.items())
        return self._drained_bytes + partial

    def remaining_bytes(self, transfer_id: Hashable) -> float:
        """Bytes of a transfer not yet sent (0 once drained, even while it waits out the latency)."""
        if transfer_id not in self._sizes:
            raise KeyError(transfer_id)
        tag = self._tags.get(transfer_id)
        return 0.0 if tag is None else max(0.0, tag - self._served(self._now))

    def start(self, transfer_id: Hashable, nbytes: float, t: float) -> None:
        """Begin sending `nbytes` at time t; the transfers sending slow down to make room."""
        if transfer_id in self._sizes:
            raise ValueError(f"transfer {transfer_id!r} is already in flight")
        if not (math.isfinite(nbytes) and nbytes >= 0):
            raise ValueError(f"a transfer needs zero or more bytes, got {nbytes}")
        self._drain_until(t)
        self._new_epoch(t, self._served(t) if self._draining else 0.0)
        tag = self._epoch_served + nbytes
        self._sizes[transfer_id] = nbytes
        self._tags[transfer_id] = tag
        heapq.heappush(self._draining, (tag, self._seq, transfer_id))
        self._seq += 1

    def next_completion(self) -> tuple[float, Hashable] | None:
        """(time, id) of the next completion if nothing else starts, or None when idle."""
        if self._arriving:
            return self._arriving[0]  # drained by now, so ahead of any transfer still sending
        if not self._draining:
            return None
        tag, _, transfer_id = self._draining[0]
        return self._drain_time(tag) + self.latency_s, transfer_id

    def advance(self, t: float) -> list[tuple[float, Hashable]]:
        """Move to time t; return the transfers completed by then, as (time, id) in completion order."""
        self._drain_until(t)
        done: list[tuple[float, Hashable]] = []
        while self._arriving and self._arriving[0][0] <= t:
            done.append(self._arriving.popleft())
            del self._sizes[done[-1][1]]
        return done

    def _served(self, t: float) -> float:
        """Bytes each sending transfer has received by t, within the current epoch."""
        return self._epoch_served + (t - self._epoch_t) * self.bandwidth / len(self._draining)

    def _drain_time(self, tag: float) -> float:
        # A tag at or below the epoch's count (equal tags, rounding) drains at the epoch's start.
        left = max(0.0, tag - self._epoch_served)
        return self._epoch_t + left * len(self._draining) / self.bandwidth

    def _new_epoch(self, t: float, served: float) -> None:
        if self._draining:
            self._busy_s += t - self._epoch_t
        self._epoch_t = t
        self._epoch_served = served

    def _drain_until(self, t: float) -> None:
        """Go through every drain up to time t, each a new epoch."""
        if t < self._now:
            raise ValueError(f"time goes backwards: {t} < {self._now}")
        while self._draining:
            tag = self._draining[0][0]
            drained_at = self._drain_time(tag)
            if drained_at > t:
                break
            self._new_epoch(drained_at, tag)
            while self._draining and self._draining[0][0] <= tag:
                _, _, transfer_id = heapq.heappop(self._draining)
                del self._tags[transfer_id]
                self._drained_bytes += self._sizes[transfer_id]
                self._arriving.append((drained_at + self.latency_s, transfer_id))
        self._now = t
