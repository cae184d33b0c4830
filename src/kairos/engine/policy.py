"""Queue policies: the order waiting requests are admitted in and who is preempted first.

Policies are registered by name so a scenario file can pick one.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator
from typing import Protocol

from kairos.engine.request import Request
from kairos.registry import Registry


class WaitingQueue(Protocol):
    """The waiting queue of one policy, plus its choice of preemption victim."""

    def add(self, req: Request) -> None: ...

    def requeue(self, req: Request) -> None:
        """Put back a preempted request."""

    def peek(self) -> Request: ...

    def pop(self) -> Request: ...

    def remove(self, req: Request) -> bool: ...

    def pick_victim(self, running: list[Request]) -> Request: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Request]: ...


POLICIES: Registry[Callable[[], WaitingQueue]] = Registry("scheduling policy")


@POLICIES.register("fcfs")
class FcfsQueue:
    """First come, first served; the newest running request is preempted first (vLLM default)."""

    def __init__(self) -> None:
        self._queue: deque[Request] = deque()

    def add(self, req: Request) -> None:
        self._queue.append(req)

    def requeue(self, req: Request) -> None:
        # A preempted request was admitted before everything still waiting: it goes first.
        self._queue.appendleft(req)

    def peek(self) -> Request:
        return self._queue[0]

    def pop(self) -> Request:
        return self._queue.popleft()

    def remove(self, req: Request) -> bool:
        try:
            self._queue.remove(req)
        except ValueError:
            return False
        return True

    def pick_victim(self, running: list[Request]) -> Request:
        return running[-1]

    def __len__(self) -> int:
        return len(self._queue)

    def __iter__(self) -> Iterator[Request]:
        return iter(self._queue)


@POLICIES.register("priority")
class PriorityQueue:
    """Lowest `priority` value first, then earliest arrival; the worst-ranked running request is preempted."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, float, int, Request]] = []

    @staticmethod
    def _rank(req: Request) -> tuple[int, float, int]:
        return (req.priority, req.arrival_s, req.uid)

    def add(self, req: Request) -> None:
        heapq.heappush(self._heap, (*self._rank(req), req))

    requeue = add

    def peek(self) -> Request:
        return self._heap[0][3]

    def pop(self) -> Request:
        return heapq.heappop(self._heap)[3]

    def remove(self, req: Request) -> bool:
        for i, item in enumerate(self._heap):
            if item[3] is req:
                self._heap[i] = self._heap[-1]
                self._heap.pop()
                heapq.heapify(self._heap)
                return True
        return False

    def pick_victim(self, running: list[Request]) -> Request:
        # vLLM ranks victims by (priority, arrival) only: among ties the first in running order.
        return max(running, key=lambda r: (r.priority, r.arrival_s))

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self) -> Iterator[Request]:
        return (item[3] for item in sorted(self._heap, key=lambda item: item[:3]))


def make_waiting_queue(policy: str) -> WaitingQueue:
    """Build the waiting queue of a registered policy ("FCFS" finds fcfs)."""
    return POLICIES.get(policy)()
