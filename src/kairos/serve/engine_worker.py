"""The engine side of serving: one EngineWorker owns the EngineRunner and steps it while anything is queued.

It takes commands (Add, Abort, Stop) from a source and hands everything it
produces to an `emit` callback as one EngineOutput per iteration: each
request's new tokens (keyed by request id), the engine snapshot, the metrics
events and the step log. Nothing here knows whether the worker runs on a thread
of the HTTP process or in an engine process of its own (kairos.serve.engine_loop
and kairos.serve.engine_process carry the messages), so every message is a plain
picklable value.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from kairos.engine import Request, RequestStatus
from kairos.errors import KairosError
from kairos.serve.reference_step import ReferenceClock, ReferenceStep
from kairos.serve.request_class import ServedClass
from kairos.serve.runner import EngineRunner
from kairos.serve.sampler import SamplingParams

logger = logging.getLogger("kairos.serve")

# Why the engine refused or dropped a request; the HTTP layer maps each to a status code.
QUEUE_FULL = "queue_full"
TOO_LARGE = "too_large"
SHUTTING_DOWN = "shutting_down"
ENGINE_FAILED = "engine_failed"


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """Everything the engine needs to run one request.

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
    served: ServedClass = field(default_factory=ServedClass)  # tenant, SLO, class name and deadline
    # time.perf_counter() when the HTTP request arrived: TTFT and E2E count from here.
    # perf_counter is the system-wide monotonic clock, so it holds across processes.
    arrival_s: float = field(default_factory=time.perf_counter)


# ---- commands (to the worker) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Add:
    request: GenerationRequest


@dataclass(frozen=True, slots=True)
class Abort:
    request_id: str


@dataclass(frozen=True, slots=True)
class Stop:
    """End the worker: what it still holds is refused as shutting down."""


# ---- deliveries (to a request's handler) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """The engine took the request: token updates follow."""


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


Delivery = Accepted | TokenUpdate | Rejection


# ---- what one iteration produced ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    """Engine state after an iteration, for /metrics and /kairos/engine."""

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


# One step-log entry: prefill_new, prefill_ctx, num_decodes, decode_kv_sum, num_sampled, decode_kv_max,
# seconds, idle_s: how long the engine sat idle before the step (0 inside a busy spell), and
# reference_s: the reference step's latest reading, the machine's speed (0: not measured), and
# start_s: when the step started (time.perf_counter(), the clock `kairos bench` stamps requests with).
StepEntry = tuple[tuple[int, ...], tuple[int, ...], int, int, int, int, float, float, float, float]


@dataclass(slots=True)
class EngineOutput:
    """Everything one worker iteration hands to the serving side.

    `snapshot` and `stats` come with iterations that stepped or changed the
    engine; `closed` is set on the worker's last output (with `error` if it failed).
    """

    deliveries: list[tuple[str, Delivery]] = field(default_factory=list)
    snapshot: EngineSnapshot | None = None
    stats: IterationStats | None = None
    steps: list[StepEntry] = field(default_factory=list)
    closed: bool = False
    error: str | None = None

    def __bool__(self) -> bool:
        return bool(self.deliveries or self.snapshot or self.steps or self.closed)


class CommandSource(Protocol):
    """Where the worker's commands come from."""

    def get(self) -> object:
        """The next command; blocks until there is one."""
        ...

    def get_nowait(self) -> object | None:
        """The next command, or None if none is waiting."""
        ...


@dataclass(slots=True)
class _Live:
    """A request the engine holds, with how many tokens its handler has been sent."""

    req: Request
    spec: GenerationRequest
    sent: int = 0
    last_token_s: float = 0.0


class EngineWorker:
    """Runs an EngineRunner for the serving side: commands in, one EngineOutput per iteration out.

    `max_waiting` bounds the engine's waiting queue: a request arriving when it is
    full is refused (QUEUE_FULL) instead of queueing without limit. Once idle, the
    worker polls for commands for `busy_poll_s` before it blocks: a CPU that sleeps
    takes time to wake, and on virtual machines it may come back slower for a
    while (a tiny model's steps were up to twice as long after every idle gap).
    With `reference_every_s` > 0 it times the reference step (the machine's speed,
    kairos.serve.reference_step) at most that often while idle, and less often
    between two steps of a busy spell (the running requests wait for it then).
    """

    def __init__(self, runner: EngineRunner, max_waiting: int = 1024, busy_poll_s: float = 0.0,
                 reference_every_s: float = 0.0) -> None:
        self.runner = runner
        self.max_waiting = max_waiting
        self.busy_poll_s = busy_poll_s
        self.reference = ReferenceClock(ReferenceStep(runner), reference_every_s) if reference_every_s > 0 else None
        self._live: dict[str, _Live] = {}
        self._out = EngineOutput()
        self._stats = IterationStats()

    def serve(self, commands: CommandSource, emit: Callable[[EngineOutput], None]) -> None:
        """Take commands and step the engine until Stop; the last output has `closed` set."""
        error = None
        try:
            self._serve(commands, emit)
        except Exception as exc:  # a bug in the engine: fail every request instead of hanging them
            logger.exception("engine failed")
            error = f"engine failure: {type(exc).__name__}: {exc}"
        rejection = Rejection(ENGINE_FAILED, error) if error else Rejection(SHUTTING_DOWN,
                                                                             "the server is shutting down")
        for request_id, live in self._live.items():
            self._out.deliveries.append((request_id, rejection))
            if live.req.status != RequestStatus.FINISHED and error is None:
                self.runner.abort(live.req)
        self._live.clear()
        self._out.closed, self._out.error = True, error
        emit(self._out)

    def _serve(self, commands: CommandSource, emit: Callable[[EngineOutput], None]) -> None:
        runner = self.runner
        # The last step's start, the end of its loop iteration and the idle time before it:
        # a step's logged time runs to the next step's start while the engine stays busy,
        # else to that end. A busy spell's first step logs how long the engine sat idle.
        last: tuple[float, float, float] | None = None
        idle_since = time.perf_counter()
        self._publish()  # the serving side starts from the engine's real state (free blocks)
        while True:
            # Wait for commands only when nothing is queued or running (busy polling first).
            if not runner.has_work():
                if last is not None:
                    self._log_step(last[0], last[1] - last[0], last[2])
                    idle_since, last = last[1], None
                self._emit(emit)
                command = self._next_when_idle(commands)
            else:
                command = commands.get_nowait()
            while command is not None:
                if isinstance(command, Stop):
                    return
                self._handle(command)
                command = commands.get_nowait()
            # Acks go out before the step, so handlers answer while the engine computes.
            self._emit(emit)
            if runner.has_work():
                # Inside a busy spell the reference step runs between two steps when due, out of their times.
                spent = 0.0
                if self.reference is not None and last is not None:
                    spent = self.reference.maybe_measure(time.perf_counter(), busy=True)
                start = time.perf_counter()
                if last is not None:
                    self._log_step(last[0], start - last[0] - spent, last[2])
                    idle = 0.0
                else:
                    idle = start - idle_since
                result = runner.step()
                self._collect(result.first_tokens)
                self._publish()
                self._emit(emit)
                last = (start, time.perf_counter(), idle)
            else:  # commands only (aborts): the snapshot changed
                self._publish()
                self._emit(emit)

    def _next_when_idle(self, commands: CommandSource) -> object:
        deadline = time.perf_counter() + self.busy_poll_s
        while True:
            command = commands.get_nowait()
            if command is not None:
                return command
            if self.reference is not None:
                self.reference.maybe_measure(time.perf_counter())
            if time.perf_counter() >= deadline:
                break
        return commands.get()

    def _emit(self, emit: Callable[[EngineOutput], None]) -> None:
        if self._out:
            out, self._out = self._out, EngineOutput()
            emit(out)

    def _log_step(self, start_s: float, seconds: float, idle_s: float) -> None:
        s = self.runner.last_shape
        reference_s = self.reference.reading_s if self.reference is not None else 0.0
        self._out.steps.append((s.prefill_new, s.prefill_ctx, s.num_decodes, s.decode_kv_sum, s.num_sampled,
                                s.decode_kv_max, seconds, idle_s, reference_s, start_s))

    def _handle(self, command: object) -> None:
        if isinstance(command, Abort):
            live = self._live.pop(command.request_id, None)
            if live is not None:
                self.runner.abort(live.req)
                self._record_finish(live, "abort", time.perf_counter())
            return
        assert isinstance(command, Add), f"unknown engine command {command!r}"
        spec = command.request
        if self.runner.engine.num_waiting >= self.max_waiting:
            self._deliver(spec.request_id, Rejection(QUEUE_FULL, f"the waiting queue is full ({self.max_waiting} "
                                                                  "requests): retry later"))
            return
        try:
            req = self.runner.add(spec.prompt_ids, spec.sampling, spec.max_tokens, spec.request_id, spec.priority,
                                  spec.served)
        except KairosError as exc:  # the handler checks limits first; this is the engine's last word
            self._deliver(spec.request_id, Rejection(TOO_LARGE, str(exc)))
            return
        self._live[spec.request_id] = _Live(req, spec)
        self._deliver(spec.request_id, Accepted())

    def _deliver(self, request_id: str, item: Delivery) -> None:
        self._out.deliveries.append((request_id, item))

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
        for request_id, live in self._live.items():
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
            self._deliver(request_id, TokenUpdate(new, finish))
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

    def _publish(self) -> None:
        runner = self.runner
        kv = runner.kv
        engine = runner.engine
        self._out.snapshot = EngineSnapshot(
            num_running=engine.num_running, num_waiting=engine.num_waiting, kv_cache_usage=kv.usage(),
            num_free_blocks=kv.num_free_blocks, num_preemptions=engine.scheduler.num_preemptions,
            prefix_cache_queries=kv.stats.queries, prefix_cache_hits=kv.stats.hits, steps=engine.stats.steps)
        self._out.stats, self._stats = self._stats, IterationStats()
