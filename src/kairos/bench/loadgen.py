"""Replaying a workload's arrivals in real time: open-loop sends, closed-loop follow-ups and a
concurrency cap (closed-loop clients)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from kairos.bench.stream import StreamResult
from kairos.errors import KairosError
from kairos.workload.spec import RequestSpec

SendFn = Callable[[RequestSpec], Awaitable[StreamResult]]


@dataclass(frozen=True, slots=True)
class Sent:
    """One request of a load run: when it was due (monotonic) and what came back."""

    spec: RequestSpec
    due_ts: float
    result: StreamResult

    @property
    def send_lag_s(self) -> float:
        """How late the request went out: event-loop lag, or a wait for a concurrency slot."""
        return self.result.sent_ts - self.due_ts


@dataclass(frozen=True, slots=True)
class LoadRun:
    """A finished load run: requests in workload order, and when it started and ended."""

    started_ts: float  # time.monotonic()
    started_wall: float  # time.time() at the same moment
    finished_ts: float
    sent: list[Sent]

    def wall_time(self, ts: float) -> float:
        """The wall-clock time of a monotonic timestamp of this run."""
        return self.started_wall + (ts - self.started_ts)


async def generate_load(specs: Sequence[RequestSpec], send: SendFn, *,
                        max_concurrency: int | None = None,
                        on_end: Callable[[], None] | None = None) -> LoadRun:
    """Send every spec through `send` at its time and return all outcomes.

    Open loop: a request without `after` is sent `arrival_s` after the start,
    whether or not earlier ones have answered. Closed loop: a follow-up turn is
    sent `think_s` after its predecessor ends, finished or failed (as the
    simulator releases it). `max_concurrency` C caps requests in flight as
    `vllm bench serve --max-concurrency` does (and the simulator with
    `workload.concurrency`): a request due while C are in flight waits, in the
    order requests fell due, until one ends; its wait shows as send lag, not in
    its TTFT. `on_end` is called as each request ends (for a progress bar).
    """
    return await _Load(specs, send, max_concurrency, on_end).run()


class _Load:
    def __init__(self, specs: Sequence[RequestSpec], send: SendFn, max_concurrency: int | None,
                 on_end: Callable[[], None] | None) -> None:
        self.specs = specs
        self.send = send
        self.on_end = on_end
        self.slots = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        ids = {spec.request_id for spec in specs}
        self.followers: dict[str, list[RequestSpec]] = {}
        for spec in specs:
            if spec.after is not None:
                if spec.after not in ids:
                    raise KairosError(f"request {spec.request_id} follows {spec.after},"
                                      " which is not in the workload")
                self.followers.setdefault(spec.after, []).append(spec)
        self.sent: dict[str, Sent] = {}

    async def run(self) -> LoadRun:
        started_wall, started_ts = time.time(), time.monotonic()
        roots = sorted((s for s in self.specs if s.after is None), key=lambda s: s.arrival_s)
        async with asyncio.TaskGroup() as tasks:
            self.tasks = tasks
            # One dispatcher sleeping to each arrival (and waiting for its slot) keeps
            # only in-flight requests as tasks, rather than one waiting task per
            # request of a long trace.
            for spec in roots:
                due = started_ts + spec.arrival_s
                await _sleep_until(due)
                await self._take_slot()
                tasks.create_task(self._request(spec, due))
        sent = [self.sent[spec.request_id] for spec in self.specs]
        return LoadRun(started_ts, started_wall, time.monotonic(), sent)

    async def _take_slot(self) -> None:
        # asyncio.Semaphore wakes its waiters first come, first served: requests go in
        # the order they fell due.
        if self.slots is not None:
            await self.slots.acquire()

    async def _follow(self, spec: RequestSpec, due: float) -> None:
        await _sleep_until(due)
        await self._take_slot()
        await self._request(spec, due)

    async def _request(self, spec: RequestSpec, due: float) -> None:
        """Send `spec` on the slot taken for it, free the slot, release the turns that follow."""
        result = await self.send(spec)
        if self.slots is not None:
            self.slots.release()
        self.sent[spec.request_id] = Sent(spec, due, result)
        ended = time.monotonic()
        if self.on_end is not None:
            self.on_end()
        for follower in self.followers.pop(spec.request_id, ()):
            self.tasks.create_task(self._follow(follower, ended + follower.think_s))


async def _sleep_until(ts: float) -> None:
    delay = ts - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
