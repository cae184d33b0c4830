"""The serving side of the engine: HTTP handlers submit requests and read their tokens from asyncio queues.

An EngineLoop sends commands to an EngineWorker (kairos.serve.engine_worker) and
receives its EngineOutputs. It keeps the engine snapshot, the step log and the
metrics observer current, and routes every delivery to its request's queue. All
deliveries of one iteration reach the event loop in a single
`loop.call_soon_threadsafe` call, so a step with 256 running requests wakes the
event loop once, not 256 times.

Two transports: ThreadedEngine runs the worker on a thread of this process;
ProcessEngine (kairos.serve.engine_process) runs it in an engine process of its
own, as vLLM's V1 engine core does, so that the HTTP side never holds the
interpreter lock the engine needs.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Protocol

from kairos.serve.engine_worker import (
    ENGINE_FAILED,
    SHUTTING_DOWN,
    Abort,
    Add,
    Delivery,
    EngineOutput,
    EngineSnapshot,
    EngineWorker,
    GenerationRequest,
    IterationStats,
    Rejection,
    Stop,
    TokenUpdate,
)
from kairos.serve.runner import EngineRunner
from kairos.serve.step_log import StepLog

class RequestRejected(Exception):
    """Raised on the asyncio side for a Rejection."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.message)
        self.reason = rejection.reason


class EngineObserver(Protocol):
    """Receives the engine state and the iteration's request events (called off the event loop)."""

    def record(self, snapshot: EngineSnapshot, stats: IterationStats) -> None: ...


# Put on a request's queue by its own handler to wake a reader after an abort.
_CLOSED = object()


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
    """The asyncio side of one engine: submit requests, read their tokens; subclasses carry the messages.

    Submitting, aborting and delivering all happen on the event loop that called
    `start()`; `receive` may be called from any thread.
    """

    def __init__(self, observer: EngineObserver | None = None) -> None:
        self.observer = observer
        self.snapshot = EngineSnapshot()
        self.error: str | None = None
        self.steps = StepLog()
        self._sinks: dict[str, asyncio.Queue[object]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # ---- transport -----------------------------------------------------------------
    def _send(self, command: Add | Abort | Stop) -> None:
        """Hand a command to the worker."""
        raise NotImplementedError

    def start(self) -> None:
        """Start taking requests; call from the event loop that will submit them."""
        self._loop = asyncio.get_running_loop()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Refuse what is still queued and end the worker."""
        raise NotImplementedError

    # ---- asyncio side --------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._loop is not None and not self._closed

    def submit(self, request: GenerationRequest) -> RequestStream:
        """Queue `request` for the engine; await the stream's `accepted()` before reading tokens."""
        sink: asyncio.Queue[object] = asyncio.Queue()
        if not self.alive:
            sink.put_nowait(self._closing_rejection())
        else:
            self._sinks[request.request_id] = sink
            self._send(Add(request))
        return RequestStream(request.request_id, sink, self._abort)

    def _abort(self, request_id: str) -> None:
        if self._sinks.pop(request_id, None) is not None and not self._closed:
            self._send(Abort(request_id))

    def _closing_rejection(self) -> Rejection:
        if self.error is not None:
            return Rejection(ENGINE_FAILED, self.error)
        return Rejection(SHUTTING_DOWN, "the server is shutting down")

    # ---- from the worker (any thread) ----------------------------------------------
    def receive(self, output: EngineOutput) -> None:
        """Take one worker output: keep the snapshot and step log, tell the observer, route the deliveries."""
        if output.steps:
            self.steps.extend(output.steps)
        if output.snapshot is not None:
            self.snapshot = output.snapshot
            if self.observer is not None:
                self.observer.record(output.snapshot, output.stats or IterationStats())
        if output.error is not None:
            self.error = output.error
        if output.deliveries or output.closed:
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(self._deliver, output.deliveries, output.closed)
            except RuntimeError:  # the event loop is closed: nobody is listening any more
                pass

    def _deliver(self, deliveries: list[tuple[str, Delivery]], closed: bool) -> None:
        sinks = self._sinks
        for request_id, item in deliveries:
            sink = sinks.get(request_id)
            if sink is None:  # aborted by its handler meanwhile
                continue
            sink.put_nowait(item)
            if isinstance(item, Rejection) or (isinstance(item, TokenUpdate) and item.finish_reason is not None):
                del sinks[request_id]
        if closed:
            # Requests the worker never saw (still in transit when it stopped) are refused too.
            self._closed = True
            rejection = self._closing_rejection()
            for sink in sinks.values():
                sink.put_nowait(rejection)
            sinks.clear()


class _QueueCommands:
    """A CommandSource over a thread-safe queue."""

    def __init__(self, inbox: queue.SimpleQueue[object]) -> None:
        self._inbox = inbox

    def get(self) -> object:
        return self._inbox.get()

    def get_nowait(self) -> object | None:
        try:
            return self._inbox.get_nowait()
        except queue.Empty:
            return None


class ThreadedEngine(EngineLoop):
    """The worker on a thread of this process: the handlers and the engine share the interpreter lock."""

    def __init__(self, runner: EngineRunner, max_waiting: int = 1024, observer: EngineObserver | None = None,
                 busy_poll_s: float = 0.0, reference_every_s: float = 0.0) -> None:
        super().__init__(observer)
        self.worker = EngineWorker(runner, max_waiting, busy_poll_s, reference_every_s)
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        super().start()
        self._thread = threading.Thread(target=self.worker.serve, args=(_QueueCommands(self._inbox), self.receive),
                                        name="kairos-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._thread is None:
            return
        self._inbox.put(Stop())
        self._thread.join(timeout_s)
        self._thread = None

    def _send(self, command: Add | Abort | Stop) -> None:
        self._inbox.put(command)
