"""The simulator's one event heap: every timed happening, ordered by (time, priority, key, seq).

Each event names the handler that processes it, so a new kind of event (a KV
transfer landing, a migration stage, a scaling tick) is a priority and a
handler, not another queue merged by hand into the loop.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from enum import IntEnum
from typing import Any

Handler = Callable[[float, Any], None]


class Priority(IntEnum):
    """Which of the events due at the same instant goes first (lowest first).

    A replica's lifecycle change (it starts serving, or drains) goes first: a
    request due at the same instant is routed knowing which replicas serve. A
    held request released by a freed client slot was due before now, so it
    goes before anything else due now. Arrivals go before deliveries, and both
    before step ends: a step starting at t sees every request that reached its
    engine by t. Transfers land after the steps ending at the same instant, as a
    remote KV read completes between two steps of the engine that waits for it.
    Periodic policy checks (migration) go last: they see what everything else at
    that instant did.
    """

    LIFECYCLE = 0
    RELEASED = 1
    ARRIVAL = 2
    DELIVERY = 3
    STEP_END = 4
    TRANSFER = 5
    CHECK = 6


# (time, priority, key, seq, handler, payload): seq is unique, so handlers are never compared.
Event = tuple[float, int, int, int, Handler, Any]


class EventQueue:
    """A min-heap of events; `key` orders events of one priority at one instant (a replica's index
    for step ends, so equal-time ends go in replica order), and `seq` keeps the rest in push order."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[Event] = []
        self._seq = 0

    def push(self, t: float, priority: Priority, handler: Handler, payload: Any = None, key: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, priority, key, self._seq, handler, payload))

    def pop(self) -> Event:
        return heapq.heappop(self._heap)

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)
