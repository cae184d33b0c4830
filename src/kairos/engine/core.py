"""EngineCore: one engine's request lifecycle, driven step by step by a sim or real executor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from kairos.engine.kv_cache import KVCacheManager
from kairos.engine.request import Request, RequestStatus
from kairos.engine.scheduler import (
    BLOCKED_BUDGET,
    BLOCKED_CHUNK,
    BLOCKED_KV,
    BLOCKED_NONE,
    BLOCKED_SEQS,
    Scheduler,
    SchedulerConfig,
    SchedulerOutput,
)
from kairos.predict import OutputPredictor, PredictionErrors
from kairos.workload.spec import RequestSpec

# Waiting requests blocked for one of these reasons stay blocked while a batch
# only decodes: the running set, the budget left and max_num_seqs do not change,
# and free KV blocks only shrink.
_STEADY_BLOCKS = frozenset({BLOCKED_NONE, BLOCKED_SEQS, BLOCKED_BUDGET, BLOCKED_KV, BLOCKED_CHUNK})
# Those that hold whichever request heads the queue: when a policy's order changes on its own,
# only these stay true, since another head may fit in the KV or the chunk the last one did not.
_ANY_HEAD_BLOCKS = frozenset({BLOCKED_NONE, BLOCKED_SEQS, BLOCKED_BUDGET})
# A prefill-only request that ends so has KV for the decode side to pull; an aborted one does not.
_SENDS_KV = frozenset({"length", "stop"})


class ItlSink(Protocol):
    """Receives inter-token latencies; `add_repeated` means each value occurred `count` times."""

    def add(self, value: float) -> None: ...

    def add_repeated(self, values: np.ndarray, count: int) -> None: ...


class Executor(Protocol):
    """Runs a scheduled step and returns the sampled token id per request uid (None in simulation)."""

    def execute(self, out: SchedulerOutput) -> dict[int, int] | None: ...


@dataclass(slots=True)
class StepResult:
    """What a step produced: requests that got their first token, and requests that finished."""

    first_tokens: list[Request] = field(default_factory=list)
    finished: list[Request] = field(default_factory=list)


@dataclass(slots=True)
class EngineStats:
    """Counters over an engine's life."""

    steps: int = 0
    busy_s: float = 0.0
    tokens: int = 0
    output_tokens: int = 0  # tokens sampled
    peak_kv_usage: float = 0.0


class EngineCore:
    """Owns the scheduler and KV cache of one replica and advances requests through steps.

    For prefill/decode disaggregation the driver (the simulator) reads
    `SchedulerOutput.remote_kv` to start each transfer, and calls
    `remote_kv_landed` on the decode engine and `release_held` on the prefill
    engine when it ends.
    """

    def __init__(self, config: SchedulerConfig, kv: KVCacheManager, itl: ItlSink | None = None,
                 stop_token_ids: frozenset[int] = frozenset(), check_invariants: bool = False,
                 predictor: OutputPredictor | None = None) -> None:
        self.config = config
        self.kv = kv
        self.scheduler = Scheduler(config, kv, predictor)
        # Predicts each request's output length when it arrives, learning from those that finish.
        self.predictor = predictor
        self.prediction_errors = PredictionErrors()
        self.itl = itl
        # Sampling one of these ends a request (EOS; Llama 3 configs list several).
        self.stop_token_ids = stop_token_ids
        self.check_invariants = check_invariants
        self.stats = EngineStats()
        # Finished requests whose blocks stay in use until a transfer out of (or into) them ends, by uid.
        self.held: dict[int, Request] = {}
        # Blocks held for live migrations into this engine, by the uid of the request they will hold.
        self.reserved: dict[int, Request] = {}
        self._next_uid = 0

    # ---- requests ----------------------------------------------------------------
    def add_request(self, spec: RequestSpec, now: float, *, remote_prefill: bool = False,
                    remote_decode: bool = False) -> Request:
        """Queue a request; `remote_prefill`: its prompt KV is pulled from a prefill engine;
        `remote_decode`: this engine only prefills it and holds its KV for a decode engine."""
        req = Request(spec, self._next_uid, now, remote_prefill=remote_prefill, remote_decode=remote_decode)
        self._next_uid += 1
        if self.predictor is not None and not remote_decode:
            req.predicted_output = self.predictor.predict(spec)
        self.scheduler.add(req)
        return req

    def abort(self, req: Request, now: float, reason: str = "aborted") -> None:
        """Stop a request wherever it is and release its blocks.

        One loading remote KV keeps its blocks until `remote_kv_landed`, as vLLM
        frees them only once the transfer writing into them has ended.
        """
        sched = self.scheduler
        if req.status == RequestStatus.FINISHED:
            return
        if req.status == RequestStatus.WAITING_FOR_REMOTE_KV:
            del sched.loading[req.uid]
            self._finish(req, now, reason, hold=True)
            return
        if req in sched.running:
            sched.running.remove(req)
        elif not sched.landed.remove(req):
            sched.waiting.remove(req)
        self._finish(req, now, reason)

    def remote_kv_landed(self, req: Request) -> None:
        """The remote KV load of `req` (listed in a step's `remote_kv`) has ended.

        The request is queued to compute its last prompt token and its blocks
        become prefix hits, which changes what the next step schedules: like an
        arrival, the simulator cuts the replica's fused decode window when it
        delivers a landing. A request aborted while loading frees its blocks now.
        """
        if req.status == RequestStatus.FINISHED:
            self.release_held(req)
        else:
            self.scheduler.finish_remote_kv(req)

    def detach(self, req: Request) -> None:
        """Take running `req` out of this engine for a live migration's last, stop-and-copy stage: it
        runs here no more, and its blocks stay held (`release_held`) while the copy reads them.
        Like an arrival, this changes what the next step schedules."""
        self.scheduler.running.remove(req)
        req.status = RequestStatus.MIGRATED
        self.held[req.uid] = req

    def withdraw(self, req: Request) -> None:
        """Take a queued request that never ran out of this engine, to route it elsewhere (a draining
        replica's queue). It holds no blocks. Like an arrival, this changes what the next step schedules."""
        if req.status != RequestStatus.WAITING or req.first_scheduled_s is not None:
            raise ValueError(f"request {req.request_id} has run here: it cannot be withdrawn")
        self.scheduler.waiting.remove(req)
        req.status = RequestStatus.MIGRATED

    def reserve(self, req: Request, tokens: int) -> Request | None:
        """Hold blocks for `tokens` tokens of `req`, running on another engine, before a live migration
        brings it here (Llumnix's pre-allocation), or None when they are not free. The blocks count as
        used (routers see them) but no step computes into them; grow them with `reserve_more`, then
        `load_reserved` or `release_reservation`. Taking blocks changes what the next step schedules."""
        new = Request(req.spec, self._next_uid, req.arrival_s)
        if not self.kv.allocate(new, tokens, delay_cache=True):
            self.kv.free(new)  # the empty block table the attempt opened
            return None
        self._next_uid += 1
        new.status = RequestStatus.RESERVED
        self.reserved[new.uid] = new
        return new

    def reserve_more(self, new: Request, tokens: int) -> bool:
        """Grow a reservation to `tokens` tokens; False (and nothing changes) when the blocks are not free."""
        return self.kv.allocate(new, tokens, delay_cache=True)

    def release_reservation(self, new: Request) -> None:
        """Free a reservation whose migration will not come (its blocks were never written)."""
        del self.reserved[new.uid]
        self.kv.free(new)

    def load_reserved(self, new: Request, req: Request) -> bool:
        """The migrated `req` stopped on its source, where it produced `req.num_output` tokens: its
        reservation `new` grows to hold all its KV and starts loading it as a remote prefill does
        (`remote_kv_landed` ends the load), its timeline (first token, last token for the next
        inter-token latency) carried over. False when the blocks are not free: nothing changes."""
        new.num_output = req.num_output
        if not self.kv.allocate(new, new.num_tokens, delay_cache=True):
            new.num_output = 0
            return False
        del self.reserved[new.uid]
        new.first_scheduled_s, new.first_token_s, new.last_token_s = (req.first_scheduled_s, req.first_token_s,
                                                                      req.last_token_s)
        new.cached_tokens, new.preemptions, new.replica = req.cached_tokens, req.preemptions, req.replica
        new.predicted_output = req.predicted_output
        if req.token_ids is not None:
            new.token_ids = list(req.token_ids)
        self.scheduler.load_remote_kv(new)
        return True

    def release_held(self, req: Request) -> None:
        """Free the blocks a request kept for a transfer that has ended: a finished prefill-only
        request's, pulled by the decode side, or a migrated one's, copied to its destination.

        They go to the cached-free LRU as any freed blocks do. Freed blocks may
        let a waiting request in: the simulator cuts a fused decode window here too.
        """
        if self.held.pop(req.uid, None) is not req:
            raise ValueError(f"request {req.request_id} holds no KV blocks for a transfer")
        self.kv.free(req)

    @property
    def num_running(self) -> int:
        return len(self.scheduler.running)

    @property
    def num_waiting(self) -> int:
        """Requests not running, those loading or holding remote KV included (as vLLM counts them)."""
        sched = self.scheduler
        return len(sched.waiting) + len(sched.loading) + len(sched.landed)

    def queued_blocks(self) -> int:
        """KV blocks the queued requests (waiting or preempted) still need to run: what admission will
        take, which a router reading only the blocks in use does not see (Llumnix's virtual usage)."""
        return sum(self._blocks_to_run(r) for r in self.scheduler.waiting)

    def head_blocks(self) -> int:
        """KV blocks the request at the head of the queue still needs to run; 0 with none queued."""
        waiting = self.scheduler.waiting
        return self._blocks_to_run(waiting.peek()) if len(waiting) else 0

    def _blocks_to_run(self, req: Request) -> int:
        return -(-(req.num_tokens - req.num_computed) // self.kv.block_size)

    def has_work(self) -> bool:
        """Whether a step could run something; requests loading remote KV are no work until it lands."""
        sched = self.scheduler
        return bool(sched.running) or len(sched.waiting) > 0 or len(sched.landed) > 0

    # ---- stepping ----------------------------------------------------------------
    def schedule(self, now: float) -> SchedulerOutput:
        out = self.scheduler.schedule(now)
        usage = self.kv.usage()
        if usage > self.stats.peak_kv_usage:
            self.stats.peak_kv_usage = usage
        if self.check_invariants:
            assert all(r.status == RequestStatus.RUNNING for r, _ in out.scheduled), "a step runs a request not running"
        return out

    def update(self, out: SchedulerOutput, now: float, sampled: dict[int, int] | None = None) -> StepResult:
        """Advance state after `out` ran and ended at time `now`."""
        result = StepResult()
        itl = self.itl
        sampled_tokens = 0
        for req, n in out.scheduled:
            req.num_computed += n
            if req.num_computed < req.num_tokens:
                continue
            req.num_output += 1
            sampled_tokens += 1
            token = None
            if sampled is not None:
                token = sampled[req.uid]
                if req.token_ids is not None:
                    req.token_ids.append(token)
            if req.first_token_s is None:
                req.first_token_s = now
                result.first_tokens.append(req)
            elif itl is not None:
                itl.add(now - req.last_token_s)
            req.last_token_s = now
            if req.num_output >= req.max_output:
                result.finished.append(req)
                self._finish(req, now, "length")
            elif token is not None and token in self.stop_token_ids:
                result.finished.append(req)
                self._finish(req, now, "stop")
        self.stats.output_tokens += sampled_tokens
        self._after_step(out, result, 1)
        return result

    def step(self, executor: Executor, now: float, clock) -> tuple[SchedulerOutput, StepResult]:
        """Schedule, execute and update one step; `clock()` reads the time when it ends."""
        out = self.schedule(now)
        if out.is_empty:
            return out, StepResult()
        sampled = executor.execute(out)
        end = clock()
        self.stats.busy_s += end - now
        return out, self.update(out, end, sampled)

    # ---- fast path for steady decode ------------------------------------------------
    def steady_decode_steps(self, out: SchedulerOutput, max_steps: int) -> int:
        """How many identical pure-decode steps, starting with `out`, run with no decision changing.

        Returns 0 when `out` is not such a step. The answer is bounded by the first
        completion (its step is the last one) and by free KV blocks: a window never
        needs a preemption, so stepping it one iteration at a time would schedule
        exactly the same requests at every step. Requests loading remote KV are
        skipped at every one of those steps (`out` may start loads: later steps
        would not); only `remote_kv_landed` or `release_held`, events the
        simulator cuts the window at, can change that.
        """
        running = self.scheduler.running
        n = len(running)
        steady = _ANY_HEAD_BLOCKS if self.scheduler.waiting.time_varying else _STEADY_BLOCKS
        if (out.preempted or out.num_admitted or out.shape.num_decodes != n
                or len(out.scheduled) != n or out.waiting_blocked not in steady
                or self.stop_token_ids):
            return 0
        steps = min(max_steps, min(r.max_output - r.num_output for r in running))
        if steps <= 1:
            return steps
        kv = self.kv
        free = kv.num_free_blocks
        if self._window_blocks(steps) > free:
            lo, hi = 1, steps  # step 1 is already allocated; find the largest that fits
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self._window_blocks(mid) <= free:
                    lo = mid
                else:
                    hi = mid - 1
            steps = lo
        return steps

    def _window_blocks(self, steps: int) -> int:
        kv = self.kv
        return sum(kv.blocks_needed(r, r.num_computed + steps) for r in self.scheduler.running)

    def begin_decode_window(self, steps: int) -> None:
        """Give every running request the KV slots of `steps` decode steps now.

        Stepping one iteration at a time would have allocated them by the start of
        the last step, which is what a router reading KV usage mid-window sees.
        """
        kv = self.kv
        for req in self.scheduler.running:
            if not kv.allocate(req, steps):
                raise AssertionError("decode window was sized to fit the KV cache")
        usage = kv.usage()
        if usage > self.stats.peak_kv_usage:
            self.stats.peak_kv_usage = usage

    def run_decode_window(self, out: SchedulerOutput, ends: np.ndarray) -> StepResult:
        """Apply len(ends) steady decode steps at once; `ends[j]` is when step j+1 ended.

        Call `begin_decode_window` first. Gives the same request state, timestamps
        and ITL samples as calling `update` after each of those steps, with no
        per-token Python work.
        """
        steps = len(ends)
        if steps == 1:
            return self.update(out, float(ends[0]))
        result = StepResult()
        running = self.scheduler.running
        first_end = float(ends[0])
        last_end = float(ends[-1])
        itl = self.itl
        for req in running:
            req.num_computed += steps
            req.num_output += steps
            if itl is not None:
                itl.add(first_end - req.last_token_s)
            req.last_token_s = last_end
            if req.num_output >= req.max_output:
                result.finished.append(req)
        if itl is not None:
            itl.add_repeated(np.diff(ends), len(running))
        for req in result.finished:
            self._finish(req, last_end, "length")
        self.stats.output_tokens += steps * len(running)
        self._after_step(out, result, steps)
        return result

    # ---- invariants -----------------------------------------------------------------
    def check_kv(self, full: bool = True) -> None:
        """The KV cache's invariants, and who holds blocks: each request with a block table
        is running, loading or holding landed remote KV, or finished (or migrated away) and held
        for a transfer."""
        self.kv.check_invariants(full)
        sched = self.scheduler
        assert all(r.status == RequestStatus.WAITING_FOR_REMOTE_KV for r in sched.loading.values())
        assert all(r.status in (RequestStatus.FINISHED, RequestStatus.MIGRATED) for r in self.held.values())
        assert all(r.status == RequestStatus.RESERVED for r in self.reserved.values())
        if not full:
            return
        owners = [r.uid for r in sched.running] + list(sched.loading) + [r.uid for r in sched.landed]
        owners += list(self.held) + list(self.reserved)
        assert len(set(owners)) == len(owners), "a request is in two places"
        assert self.kv.holders() == set(owners), "block tables disagree with the requests holding blocks"

    # ---- internals ------------------------------------------------------------------
    def _finish(self, req: Request, now: float, reason: str, hold: bool = False) -> None:
        req.status = RequestStatus.FINISHED
        req.finish_s = now
        req.finish_reason = reason
        if req.predicted_output is not None and reason in _SENDS_KV:
            self.predictor.observe(req.spec, req.num_output)
            self.prediction_errors.add(req.predicted_output, req.num_output)
        if hold or (req.remote_decode and reason in _SENDS_KV):
            # vLLM's delay_free_blocks: a transfer still reads (or writes) these blocks.
            self.held[req.uid] = req
        else:
            self.kv.free(req)

    def _after_step(self, out: SchedulerOutput, result: StepResult, steps: int) -> None:
        self.stats.steps += steps
        self.stats.tokens += out.num_tokens * steps
        policy = self.scheduler.waiting
        if policy.counts_service:
            for req, n in out.scheduled:
                policy.served(req, n * steps)
        if result.finished:
            self.scheduler.remove_finished(result.finished)
        if self.check_invariants:
            self.check_kv(full=False)
