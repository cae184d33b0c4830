"""What a scheduling policy decides, and the registry policies are picked from by name.

A policy owns the waiting queue of one engine: the order waiting requests are
admitted in, whether one may be admitted now (admission control), how many
tokens a request may compute in a step, and who is preempted first when KV
blocks run out. The scheduler (kairos.engine.scheduler) keeps vLLM's mechanics
around it: running requests first, chunked prefill, preemption by recompute.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from kairos.engine.kv_cache import KVCacheManager
from kairos.engine.request import Request
from kairos.errors import KairosError
from kairos.predict import OutputPredictor
from kairos.registry import Registry


@dataclass(slots=True)
class StepContext:
    """What a policy may read when it decides on a request during one step's scheduling."""

    now: float
    running: list[Request]
    kv: KVCacheManager
    scheduled_tokens: int  # tokens given to the step's requests so far


class QueuePolicy:
    """The waiting queue of one policy, plus its admission rule and its choice of preemption victim.

    Subclasses implement the queue (add, peek, pop, remove, iteration) and may override the hooks,
    whose defaults change nothing. Class flags tell the engine what the fused decode windows may
    assume (kairos.engine.core):

    - `time_varying`: the order of the queue can change with time or with tokens served,
      without any request added or removed; then a queue blocked on the head's KV or chunk
      may unblock on its own, and the engine steps one iteration at a time while it waits.
    - `gates_admission`: `admit` may refuse a request the engine has room for.
    - `caps_running`: `cap_running` may give a running request fewer tokens than it needs.
    - `counts_service`: `served` must see every token each request computes.
    """

    time_varying: ClassVar[bool] = False
    gates_admission: ClassVar[bool] = False
    caps_running: ClassVar[bool] = False
    counts_service: ClassVar[bool] = False
    # The policy ranks by predicted output lengths: the engine sets `Request.predicted_output`.
    needs_predictor: ClassVar[bool] = False

    def add(self, req: Request) -> None:
        raise NotImplementedError

    def requeue(self, req: Request) -> None:
        """Put back a preempted (or migrated-in) request."""
        self.add(req)

    def peek(self) -> Request:
        raise NotImplementedError

    def pop(self) -> Request:
        raise NotImplementedError

    def remove(self, req: Request) -> bool:
        raise NotImplementedError

    def pick_victim(self, running: list[Request]) -> Request:
        """The running request to preempt when one cannot get KV blocks: the newest by default (vLLM)."""
        return running[-1]

    def advance(self, now: float) -> None:
        """The scheduler is about to schedule a step at `now`."""

    def admit(self, req: Request, num_new: int, ctx: StepContext) -> int:
        """How many of `num_new` tokens the head request `req` may compute if admitted now (0: not now)."""
        return num_new

    def cap_running(self, req: Request, num_new: int, ctx: StepContext) -> int:
        """How many of `num_new` tokens running `req` may compute this step (0: skip it this step)."""
        return num_new

    def served(self, req: Request, tokens: int) -> None:
        """`req` computed `tokens` tokens (a fused window reports all its steps at once)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Request]:
        raise NotImplementedError


PolicyFactory = Callable[..., QueuePolicy]
POLICIES: Registry[PolicyFactory] = Registry("scheduling policy")


class FifoQueue(QueuePolicy):
    """A deque in arrival order; a preempted request goes back to the front."""

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

    def __len__(self) -> int:
        return len(self._queue)

    def __iter__(self) -> Iterator[Request]:
        return iter(self._queue)


class SplitQueue(QueuePolicy):
    """Two first-come-first-served queues: `queue_of` sorts a request into one, `head_queue` says which
    is served next; a preempted request goes back to the front of its own."""

    def queues(self) -> tuple[deque[Request], deque[Request]]:
        raise NotImplementedError

    def queue_of(self, req: Request) -> deque[Request]:
        raise NotImplementedError

    def head_queue(self) -> deque[Request]:
        raise NotImplementedError

    def add(self, req: Request) -> None:
        self.queue_of(req).append(req)

    def requeue(self, req: Request) -> None:
        self.queue_of(req).appendleft(req)

    def peek(self) -> Request:
        return self.head_queue()[0]

    def pop(self) -> Request:
        return self.head_queue().popleft()

    def remove(self, req: Request) -> bool:
        queue = self.queue_of(req)
        if req not in queue:
            return False
        queue.remove(req)
        return True

    def __len__(self) -> int:
        return sum(len(queue) for queue in self.queues())

    def __iter__(self) -> Iterator[Request]:
        for queue in self.queues():
            yield from queue


class RankedQueue(QueuePolicy):
    """A heap ordered by `rank(req)`, taken when the request is (re)queued; the worst-ranked
    running request (`victim_rank`) is preempted first."""

    def __init__(self) -> None:
        self._heap: list[tuple[Any, int, Request]] = []
        self._seq = itertools.count()  # ties keep insertion order; Requests are never compared

    def rank(self, req: Request) -> Any:
        raise NotImplementedError

    def victim_rank(self, req: Request) -> Any:
        return self.rank(req)

    def add(self, req: Request) -> None:
        heapq.heappush(self._heap, (self.rank(req), next(self._seq), req))

    def peek(self) -> Request:
        return self._heap[0][2]

    def pop(self) -> Request:
        return heapq.heappop(self._heap)[2]

    def remove(self, req: Request) -> bool:
        return remove_from_heap(self._heap, req)

    def pick_victim(self, running: list[Request]) -> Request:
        # max() keeps the first of equals: among ties, the first in running order.
        return max(running, key=self.victim_rank)

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self) -> Iterator[Request]:
        return heap_order(self._heap)


def remove_from_heap(heap: list[tuple[Any, int, Request]], req: Request) -> bool:
    """Take `req` out of a heap of (rank, sequence, request) items; False if it is not there."""
    for i, item in enumerate(heap):
        if item[2] is req:
            heap[i] = heap[-1]
            heap.pop()
            heapq.heapify(heap)
            return True
    return False


def heap_order(heap: list[tuple[Any, int, Request]]) -> Iterator[Request]:
    """The requests of a heap of (rank, sequence, request) items, in the order it pops them."""
    return (item[2] for item in sorted(heap, key=lambda item: item[:2]))


def make_waiting_queue(policy: str, options: dict[str, Any] | None = None,
                       predictor: OutputPredictor | None = None) -> QueuePolicy:
    """Build the waiting queue of a registered policy ("FCFS" finds fcfs) with its knobs.

    A policy that ranks by predicted lengths and gets no predictor is a one-line error.
    """
    factory = POLICIES.get(policy)
    name = POLICIES.canonical(policy)
    options = dict(options or {})
    POLICIES.check_knobs(name, options, [k for k in POLICIES.knobs(name) if k != "predictor"])
    if getattr(factory, "needs_predictor", False):
        if predictor is None:
            raise KairosError(f"scheduling policy '{name}' ranks by predicted output lengths: give it a predictor")
        options["predictor"] = predictor
    try:
        return factory(**options)
    except (TypeError, ValueError) as e:
        raise KairosError(f"scheduling policy '{name}': {e}") from None
