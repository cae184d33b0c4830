"""The engine thread: one thread owns the EngineRunner and steps it; the asyncio side only sends it messages.

Handlers never touch the runner. They put commands (add, abort) on a thread-safe
inbox; the engine thread drains it between steps, runs `step()` while any request
is queued or running, and hands each request's new tokens back to its asyncio
queue. All deliveries of one iteration travel in a single
`loop.call_soon_threadsafe` call, so a step with 256 running requests wakes the
event loop once, not 256 times. When idle the thread blocks on the inbox.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from kairos.engine import Request, RequestStatus
from kairos.errors import KairosError
from kairos.serve.runner import EngineRunner
from kairos.perf.base import BatchShape
from kairos.serve.sampler import SamplingParams
from kairos.serve.step_log import StepLog

logger = logging.getLogger("kairos.serve")

# Why the engine refused or dropped a request; the HTTP layer maps each to a status code.
QUEUE_FULL = "queue_full"
TOO_LARGE = "too_large"
SHUTTING_DOWN = "shutting_down"
ENGINE_FAILED = "engine_failed"


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """Everything the engine thread needs to run one request.

    `stop_token_ids` end the request once at least `min_tokens` tokens exist (EOS
    goes in here unless the client asked for ignore_eos). The runner itself never
    stops on EOS: stopping is per request, so it is decided here.
    """

    request_id: str
    prompt_ids: tuple[int, ...]
    sampling: SamplingParams
    max_tokens: int
    stop_token_ids: frozenset[int] = frozenset()
    min_tokens: int = 0
    priority: int = 0
    # time.perf_counter() when the HTTP request arrived: TTFT and E2E count from here.
    arrival_s: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True, slots=True)
class TokenUpdate:
    """Tokens one request generated since its last update; `finish_reason` ("length", "stop") on the last."""

    token_ids: list[int]
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """The engine refused a request, or dropped it after accepting it (`reason` is one of the constants above)."""

    reason: str
    message: str


class RequestRejected(Exception):
    """Raised on the asyncio side for a Rejection."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.message)
        self.reason = rejection.reason


_ACCEPTED = object()
# Put on a request's queue by its own handler to wake a reader after an abort.
_CLOSED = object()


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    """Engine state after an iteration, published by the engine thread for /metrics and /kairos/engine."""

    num_running: int = 0
    num_waiting: int = 0
    kv_cache_usage: float = 0.0
    num_free_blocks: int = 0
    num_preemptions: int = 0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    steps: int = 0


@dataclass(frozen=True, slots=True)
class FinishedRequest:
    """Latency and size of one request that ended (`reason` "length", "stop" or "abort")."""

    reason: str
    e2e_s: float
    prompt_tokens: int
    completion_tokens: int


@dataclass(slots=True)
class IterationStats:
    """What one engine-loop iteration produced, for the metrics observer."""

    ttfts: list[float] = field(default_factory=list)
    queue_times: list[float] = field(default_factory=list)
    itls: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    generation_tokens: int = 0
    finished: list[FinishedRequest] = field(default_factory=list)


class EngineObserver(Protocol):
    """Receives the engine state and the iteration's request events (called on the engine thread)."""

    def record(self, snapshot: EngineSnapshot, stats: IterationStats) -> None: ...


@dataclass(frozen=True, slots=True)
class _Add:
    request: GenerationRequest
    sink: asyncio.Queue[object]


@dataclass(frozen=True, slots=True)
class _Abort:
    request_id: str


_STOP = object()


@dataclass(slots=True)
class _Live:
    """A request the engine holds, with what its handler has been sent."""

    req: Request
    spec: GenerationRequest
    sink: asyncio.Queue[object]
    sent: int = 0
    last_token_s: float = 0.0


class RequestStream:
    """One request as its HTTP handler sees it: await `accepted()`, then iterate its TokenUpdates.

    Iteration ends after the update that carries a finish reason, or early once
    `abort()` was called (then `finish_reason` stays None).
    """

    def __init__(self, request_id: str, sink: asyncio.Queue[object], abort: Callable[[str], None]) -> None:
        self.request_id = request_id
        self.finish_reason: str | None = None
        self._sink = sink
        self._abort = abort
        self._closed = False

    async def accepted(self) -> None:
        """Wait for the engine to take the request; raises RequestRejected if it refused."""
        item = await self._sink.get()
        if isinstance(item, Rejection):
            self._closed = True
            raise RequestRejected(item)

    def __aiter__(self) -> RequestStream:
        return self

    async def __anext__(self) -> TokenUpdate:
        if self._closed:
            raise StopAsyncIteration
        item = await self._sink.get()
        if item is _CLOSED:
            raise StopAsyncIteration
        if isinstance(item, Rejection):
            self._closed = True
            raise RequestRejected(item)
        assert isinstance(item, TokenUpdate)
        if item.finish_reason is not None:
            self.finish_reason = item.finish_reason
            self._closed = True
        return item

    def abort(self) -> None:
        """Stop the request (client gone, stop string seen) and free its KV blocks; a no-op once finished."""
        if self._closed:
            return
        self._closed = True
        self._abort(self.request_id)
        self._sink.put_nowait(_CLOSED)


class EngineLoop:
    """Runs an EngineRunner on its own thread and serves requests submitted from one asyncio event loop.

    `max_waiting` bounds the engine's waiting queue: a request arriving when it is
    full is refused (QUEUE_FULL) instead of queueing without limit.
    """

    def __init__(self, runner: EngineRunner, max_waiting: int = 1024,
                 observer: EngineObserver | None = None) -> None:
        self.runner = runner
        self.max_waiting = max_waiting
        self.observer = observer
        self.snapshot = EngineSnapshot()
        self.error: str | None = None
        self.steps = StepLog()
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._live: dict[str, _Live] = {}
        self._outbox: list[tuple[asyncio.Queue[object], object]] = []
        self._stats = IterationStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Set once the engine thread stops taking requests; guarded so that no request
        # slips into the inbox after the thread's last look at it.
        self._closed = False
        self._lock = threading.Lock()

    # ---- asyncio side --------------------------------------------------------------
    def start(self) -> None:
        """Start the engine thread; call from the event loop that will submit requests."""
        self._loop = asyncio.get_running_loop()
        self._publish()
        self._thread = threading.Thread(target=self._run, name="kairos-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Refuse what is still queued, end the thread and wait for it."""
        if self._thread is None:
            return
        self._inbox.put(_STOP)
        self._thread.join(timeout_s)
        self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and not self._closed

    def submit(self, request: GenerationRequest) -> RequestStream:
        """Queue `request` for the engine thread; await the stream's `accepted()` before reading tokens."""
        sink: asyncio.Queue[object] = asyncio.Queue()
        with self._lock:
            if self._thread is None or self._closed:
                sink.put_nowait(self._closing_rejection())
            else:
                self._inbox.put(_Add(request, sink))
        return RequestStream(request.request_id, sink, self._send_abort)

    def _closing_rejection(self) -> Rejection:
        if self.error is not None:
            return Rejection(ENGINE_FAILED, self.error)
        return Rejection(SHUTTING_DOWN, "the server is shutting down")

    def _send_abort(self, request_id: str) -> None:
        self._inbox.put(_Abort(request_id))

    # ---- engine thread -------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._serve()
        except Exception as exc:  # a bug in the engine: fail every request instead of hanging them
            logger.exception("engine thread failed")
            self.error = f"engine failure: {type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._closed = True
            rejection = self._closing_rejection()
            self._drop_all(rejection)
            while (command := self._next_command()) is not None:
                if isinstance(command, _Add):
                    self._send(command.sink, rejection)
            self._flush()

    def _serve(self) -> None:
        """Take commands and step the engine until told to stop."""
        runner = self.runner
        # The last step, its start and the end of its loop iteration: a step's logged time
        # runs to the next step's start while the engine stays busy, else to that end.
        last: tuple[BatchShape, float, float] | None = None
        while True:
            # Block only when nothing is queued or running: no busy spin while idle.
            if not runner.has_work():
                if last is not None:
                    self.steps.record(last[0], last[2] - last[1])
                    last = None
                command = self._inbox.get()
            else:
                command = self._next_command()
            while command is not None:
                if command is _STOP:
                    return
                self._handle(command)
                command = self._next_command()
            # Acks go out before the step, so handlers answer while the engine computes.
            self._flush()
            if runner.has_work():
                start = time.perf_counter()
                if last is not None:
                    self.steps.record(last[0], start - last[1])
                result = runner.step()
                self._collect(result.first_tokens)
                self._publish()
                self._flush()
                last = (runner.last_shape, start, time.perf_counter())
            else:
                self._publish()
                self._flush()

    def _next_command(self) -> object | None:
        try:
            return self._inbox.get_nowait()
        except queue.Empty:
            return None

    def _handle(self, command: object) -> None:
        if isinstance(command, _Abort):
            live = self._live.pop(command.request_id, None)
            if live is not None:
                self.runner.abort(live.req)
                self._record_finish(live, "abort", time.perf_counter())
            return
        assert isinstance(command, _Add)
        spec = command.request
        if self.runner.engine.num_waiting >= self.max_waiting:
            self._send(command.sink, Rejection(QUEUE_FULL, f"the waiting queue is full ({self.max_waiting} "
                                                           "requests): retry later"))
            return
        try:
            req = self.runner.add(spec.prompt_ids, spec.sampling, spec.max_tokens, spec.request_id, spec.priority)
        except KairosError as exc:  # the handler checks limits first; this is the engine's last word
            self._send(command.sink, Rejection(TOO_LARGE, str(exc)))
            return
        self._live[spec.request_id] = _Live(req, spec, command.sink)
        self._send(command.sink, _ACCEPTED)

    def _collect(self, first_tokens: list[Request]) -> None:
        """Send each request its new tokens; end those that finished or hit a stop token."""
        now = time.perf_counter()
        stats = self._stats
        for req in first_tokens:
            live = self._live.get(req.request_id)
            if live is not None:
                stats.ttfts.append(now - live.spec.arrival_s)
                if req.first_scheduled_s is not None:
                    stats.queue_times.append(req.first_scheduled_s - live.spec.arrival_s)
                stats.prompt_tokens += req.prompt_len
        done: list[tuple[_Live, str]] = []
        for live in self._live.values():
            req = live.req
            produced = req.num_output
            if produced <= live.sent:
                continue
            assert req.token_ids is not None
            start = req.prompt_len + live.sent
            new = req.token_ids[start:start + produced - live.sent]
            reason = self._stop_reason(live, new)
            if reason is not None:
                # Keep tokens up to the stop token; the engine may not know the request ended.
                new = new[:reason[1] + 1]
                finish = reason[0]
                if req.status != RequestStatus.FINISHED:
                    self.runner.abort(req)
            else:
                finish = req.finish_reason if req.status == RequestStatus.FINISHED else None
            if live.sent:
                stats.itls.append(now - live.last_token_s)
            live.sent += len(new)
            live.last_token_s = now
            stats.generation_tokens += len(new)
            self._send(live.sink, TokenUpdate(new, finish))
            if finish is not None:
                done.append((live, finish))
        for live, finish in done:
            del self._live[live.spec.request_id]
            self._record_finish(live, finish, now)

    @staticmethod
    def _stop_reason(live: _Live, new: list[int]) -> tuple[str, int] | None:
        """("stop", index in `new`) of the first stop token past min_tokens, if any."""
        stops = live.spec.stop_token_ids
        if not stops:
            return None
        for i, token in enumerate(new):
            if token in stops and live.sent + i + 1 >= live.spec.min_tokens:
                return "stop", i
        return None

    def _record_finish(self, live: _Live, reason: str, now: float) -> None:
        self._stats.finished.append(FinishedRequest(reason, now - live.spec.arrival_s,
                                                    live.req.prompt_len, live.sent))

    def _drop_all(self, rejection: Rejection) -> None:
        for live in self._live.values():
            self._send(live.sink, rejection)
            if live.req.status != RequestStatus.FINISHED and self.error is None:
                self.runner.abort(live.req)
        self._live.clear()

    def _send(self, sink: asyncio.Queue[object], item: object) -> None:
        self._outbox.append((sink, item))

    def _flush(self) -> None:
        if not self._outbox:
            return
        batch, self._outbox = self._outbox, []
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(_deliver, batch)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            pass

    def _publish(self) -> None:
        runner = self.runner
        kv = runner.kv
        engine = runner.engine
        self.snapshot = snapshot = EngineSnapshot(
            num_running=engine.num_running, num_waiting=engine.num_waiting, kv_cache_usage=kv.usage(),
            num_free_blocks=kv.num_free_blocks, num_preemptions=engine.scheduler.num_preemptions,
            prefix_cache_queries=kv.stats.queries, prefix_cache_hits=kv.stats.hits, steps=engine.stats.steps)
        stats, self._stats = self._stats, IterationStats()
        if self.observer is not None:
            self.observer.record(snapshot, stats)


def _deliver(batch: list[tuple[asyncio.Queue[object], object]]) -> None:
    for sink, item in batch:
        sink.put_nowait(item)
