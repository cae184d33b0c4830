"""Deadline-aware policies: earliest deadline first, and least slack first (JITServe-like)."""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from kairos.engine.policies.base import POLICIES, QueuePolicy, RankedQueue, heap_order, remove_from_heap
from kairos.engine.request import Request
from kairos.predict import OutputPredictor


def due_s(req: Request) -> float:
    """When `req` should be done: its deadline, else its E2E target, else its TTFT target (inf: none)."""
    spec = req.spec
    if spec.deadline_s is not None:
        return req.arrival_s + spec.deadline_s
    slo = spec.slo
    if slo is not None:
        if slo.e2e_ms is not None:
            return req.arrival_s + slo.e2e_ms / 1e3
        if slo.ttft_ms is not None:
            return req.arrival_s + slo.ttft_ms / 1e3
    return math.inf


@POLICIES.register("edf")
class EarliestDeadlineFirst(RankedQueue):
    """Earliest deadline first (deadline_s, else the E2E or TTFT target); the latest-due request is preempted.

    Requests with neither wait behind every request that has one, first come first served.
    """

    def rank(self, req: Request) -> tuple[float, float, int]:
        return (due_s(req), req.arrival_s, req.uid)

    def victim_rank(self, req: Request) -> tuple[float, float]:
        return (due_s(req), req.arrival_s)


@POLICIES.register("slack")
@dataclass(eq=False)
class LeastSlackFirst(QueuePolicy):
    """Least slack first, hopeless requests last (JITServe-like just-in-time SLO scheduling).

    A request's slack at time t is its due time (see `edf`) less t less the
    service it still needs: its predicted remaining output times its TPOT target
    (`tpot_ms` when it has none) for a deadline or E2E target, nothing for a TTFT
    target. Requests are served least slack first while their slack is
    non-negative; once it is negative the request can no longer make it, and it
    waits, in arrival order, with the requests that have no target, behind every
    request that still can. The order changes with time: a request turns
    hopeless as the clock passes its latest start.
    """

    predictor: OutputPredictor
    tpot_ms: float = 50.0
    _feasible: list[tuple[float, int, Request]] = field(init=False, repr=False)
    _rest: list[tuple[float, int, Request]] = field(init=False, repr=False)
    _seq: itertools.count = field(init=False, repr=False)
    _now: float = field(init=False, default=0.0, repr=False)
    needs_predictor = True
    time_varying = True

    def __post_init__(self) -> None:
        if self.tpot_ms <= 0:
            raise ValueError(f"tpot_ms must be > 0, got {self.tpot_ms}")
        self._feasible, self._rest, self._seq = [], [], itertools.count()

    def latest_start_s(self, req: Request) -> float:
        """Due time less the service still needed: the slack is this less the clock."""
        due = due_s(req)
        spec = req.spec
        if due == math.inf or (spec.deadline_s is None and (spec.slo is None or spec.slo.e2e_ms is None)):
            return due
        tpot_ms = spec.slo.tpot_ms if spec.slo is not None and spec.slo.tpot_ms is not None else self.tpot_ms
        remaining = self.predictor.predict(spec, req.num_output) - req.num_output
        return due - remaining * tpot_ms / 1e3

    def add(self, req: Request) -> None:
        latest = self.latest_start_s(req)
        if latest >= self._now and latest != math.inf:
            heapq.heappush(self._feasible, (latest, next(self._seq), req))
        else:
            heapq.heappush(self._rest, (req.arrival_s, next(self._seq), req))

    def advance(self, now: float) -> None:
        self._now = now
        feasible = self._feasible
        while feasible and feasible[0][0] < now:
            _, seq, req = heapq.heappop(feasible)
            heapq.heappush(self._rest, (req.arrival_s, seq, req))

    def _head_heap(self) -> list[tuple[float, int, Request]]:
        return self._feasible if self._feasible else self._rest

    def peek(self) -> Request:
        return self._head_heap()[0][2]

    def pop(self) -> Request:
        return heapq.heappop(self._head_heap())[2]

    def remove(self, req: Request) -> bool:
        return remove_from_heap(self._feasible, req) or remove_from_heap(self._rest, req)

    def pick_victim(self, running: list[Request]) -> Request:
        # The one that can best afford to wait: most slack (no target: infinite slack).
        return max(running, key=self.latest_start_s)

    def __len__(self) -> int:
        return len(self._feasible) + len(self._rest)

    def __iter__(self) -> Iterator[Request]:
        yield from heap_order(self._feasible)
        yield from heap_order(self._rest)
