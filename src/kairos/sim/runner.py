"""The discrete-event loop: arrivals, routing and engine steps on a virtual clock."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from kairos.cluster.router import Router
from kairos.engine.kv_cache import KVCacheManager
from kairos.engine.request import Request
from kairos.engine.scheduler import SchedulerOutput
from kairos.metrics.itl import ItlCollector
from kairos.metrics.record import RequestRecord
from kairos.metrics.timeseries import TimeSeries
from kairos.predict import PredictionErrors
from kairos.sim.explain import StepSampler
from kairos.sim.events import EventQueue, Priority
from kairos.sim.lifecycle import FleetChange, to_drain, to_start
from kairos.sim.recorder import TimeSeriesRecorder
from kairos.sim.replica import ReplicaSet, ReplicaState, SimClock, SimReplica
from kairos.workload.spec import RequestSpec

ProgressFn = Callable[[int, int], None]

# Longest run of decode steps advanced at once; bounds the size of one window's arrays.
MAX_WINDOW_STEPS = 4096


@dataclass(slots=True)
class SimResult:
    """Everything a run produced, ready for the metrics package."""

    records: list[RequestRecord]
    itl: ItlCollector
    replicas: list[dict] = field(default_factory=list)
    prefix_queries: int = 0
    prefix_hits: int = 0
    preemptions: int = 0
    end_s: float = 0.0
    events: int = 0  # arrivals and step (or fused window) ends processed
    disaggregation: dict | None = None  # a disaggregated cluster's remote prefills and KV transfers
    migration: dict | None = None  # live migrations between replicas
    prediction: dict | None = None  # the output-length predictor's error, when the engines have one
    lifecycle: dict | None = None  # scheduled starts and drains: each replica's state changes
    timeseries: TimeSeries | None = None  # each replica's sampled state, when a recorder ran

    @property
    def prefix_cache_hit_rate(self) -> float:
        return self.prefix_hits / self.prefix_queries if self.prefix_queries else 0.0


class Simulation:
    """Drives replicas behind a router through a workload, on virtual time.

    Every timed happening is an event on one heap (kairos.sim.events): arrivals,
    deliveries to the engines after the front end's latency, and step ends. At
    equal times arrivals go first, so a step that starts at time t sees every
    request that arrived by t. While a replica's batch only decodes and nothing
    can change the scheduler's decision, the whole run of identical steps up to
    its next completion or KV shortage is one event (`fast_decode`). A request
    delivered during such a window ends only the window of the replica it goes
    to (with the step running then); a router reading another replica's KV
    state mid-window sees what stepping would show (`SimReplica.sync_kv`)
    without cutting it. The outcome is exactly that of stepping one iteration
    at a time.

    With `concurrency` C the workload is a closed loop (vLLM bench's
    --max-concurrency): at most C requests are in flight, from their send to their
    end; a request due while all C are busy is sent when one ends, and its record's
    arrival (TTFT's start) is that send.

    `lifecycle` changes the fleet at set times (replicas given as STOPPED are the
    spares a start brings up): routers see only the SERVING replicas; a draining
    replica finishes what it holds, then stops. A request delivered while no
    replica serves waits in a cluster queue, in order, and is routed when one
    does. Changes due after the last request ended do not happen: the replicas'
    state seconds are counted up to that end.
    """

    def __init__(self, specs: Sequence[RequestSpec], replicas: list[SimReplica], router: Router, *,
                 max_model_len: int, itl: ItlCollector, fast_decode: bool = True,
                 progress: ProgressFn | None = None, explain: StepSampler | None = None,
                 request_latency: Callable[[int], float] | None = None, concurrency: int | None = None,
                 lifecycle: Sequence[FleetChange] = ()) -> None:
        self.clock = SimClock()
        self.replicas = ReplicaSet(replicas, self.clock)
        self.router = router
        self.max_model_len = max_model_len
        self.itl = itl
        self.fast_decode = fast_decode
        self.progress = progress
        self.explain = explain
        # Set before `run`: called as each request ends, with the run's request count; True ends the run
        # there (a capacity search that has its verdict).
        self.stop_when: Callable[[RequestRecord, int], bool] | None = None
        self._stopped = False
        self.recorder: TimeSeriesRecorder | None = None  # set before `run` to sample each replica's state
        # Front-end time between a client sending a request and the engine seeing it
        # (HTTP, parsing, tokenization), by prompt length: it counts in TTFT but the
        # engine cannot use it.
        self.request_latency = request_latency
        self._events = EventQueue()
        # Client slots left; infinite in an open loop, where nothing waits for one.
        self._free_slots: float = math.inf if concurrency is None else concurrency
        self._held: deque[RequestSpec] = deque()  # due while no slot was free, in the order they were due
        self._open = sorted((s for s in specs if s.after is None), key=lambda s: s.arrival_s)
        self._next_open = 0
        self._followers: dict[str, list[RequestSpec]] = {}
        for spec in specs:
            if spec.after is not None:
                self._followers.setdefault(spec.after, []).append(spec)
        self._total = len(specs)
        self._records: list[tuple[float, int, RequestRecord]] = []
        self._live: dict[int, tuple[Request, RequestRecord]] = {}
        self._ended = 0
        self._last_end_s = 0.0
        self._changes = sorted(lifecycle, key=lambda c: c.at_s)  # stable: list order at one instant
        self._next_change = 0
        self._timeline: list[tuple[float, int, str]] = []  # (t, replica, state entered)
        self._starts = [0] * len(replicas)  # per replica, counts its starts: a stale startup end is dropped
        self._unrouted: deque[tuple[RequestSpec, RequestRecord]] = deque()  # delivered while none served

    # ---- main loop -------------------------------------------------------------------
    def run(self) -> SimResult:
        events = self._events
        clock = self.clock
        self._push_next_open()
        self._push_next_change()
        processed = 0
        recorder = self.recorder
        sample_at = math.inf if recorder is None else 0.0
        while events and not self._stopped:
            t, _, _, _, handler, payload = events.pop()
            if t >= sample_at:  # the samples due by now see the state before this event
                sample_at = recorder.sample_until(t, self.replicas)
            clock.now = t
            handler(t, payload)
            processed += 1
            if self.progress is not None and processed % 4096 == 0:
                self.progress(self._ended, self._total)
        if self.progress is not None:
            self.progress(self._ended, self._total)
        return self._result(processed)

    def _push_next_open(self) -> None:
        """The workload's arrivals enter the heap one at a time, in order: the heap stays small."""
        if self._next_open < len(self._open):
            spec = self._open[self._next_open]
            self._next_open += 1
            self._events.push(spec.arrival_s, Priority.ARRIVAL, self._on_open_arrival, spec)

    def _push_next_change(self) -> None:
        if self._next_change < len(self._changes) and self._ended < self._total:
            change = self._changes[self._next_change]
            self._next_change += 1
            self._events.push(change.at_s, Priority.LIFECYCLE, self._on_change, change)

    # ---- events ----------------------------------------------------------------------
    def _on_open_arrival(self, t: float, spec: RequestSpec) -> None:
        self._push_next_open()
        self._on_arrival(t, spec)

    def _on_arrival(self, t: float, spec: RequestSpec) -> None:
        if self._free_slots <= 0:  # closed loop: it waits for a request to end
            self._held.append(spec)
            return
        self._arrive(spec, t)

    def _arrive(self, spec: RequestSpec, t: float) -> None:
        """The client sends the request at `t`: it holds a slot until it ends."""
        self._free_slots -= 1
        record = RequestRecord.for_spec(spec, t)
        self._records.append((t, len(self._records), record))
        reason = self._reject_reason(spec)
        if reason is not None:
            record.rejected_reason = reason
            self._end(record, t)
            return
        latency = self.request_latency(spec.prompt_len) if self.request_latency is not None else 0.0
        if latency > 0:
            self._events.push(t + latency, Priority.DELIVERY, self._deliver, (spec, record))
        else:
            self._deliver(t, (spec, record))

    def _deliver(self, t: float, request: tuple[RequestSpec, RequestRecord]) -> None:
        """The engines see the request at `t`: route it and queue it on the one replica it goes to."""
        serving = self.replicas.serving
        if not serving:
            self._unrouted.append(request)
            return
        spec, record = request
        replica = self.replicas[self.router.route(spec, serving)]
        self._admit(replica, spec, record, t)

    def _admit(self, replica: SimReplica, spec: RequestSpec, record: RequestRecord | None, t: float,
               **engine_options: bool) -> Request:
        """Queue `spec` on `replica` at `t` (`record`: its client-facing timeline, None for work done on
        another request's behalf); `engine_options` go to the engine core's add_request."""
        self._cut_window(replica, t)
        replica.fleet.routed(replica)
        req = replica.core.add_request(spec, t, **engine_options)
        req.replica = replica.index
        if record is not None:
            record.replica = replica.index
            self._live[id(req)] = (req, record)
        self._wake(replica, t)
        return req

    def _wake(self, replica: SimReplica, t: float) -> None:
        """An idle replica with new work starts a step at `t`, once every event of this instant is in."""
        if replica.in_flight is None and not replica.waking:
            replica.waking = True
            self._push_step_end(replica, t)

    def _cut_window(self, replica: SimReplica, t: float) -> None:
        """A request delivered at `t` may change what its replica schedules next: end its fused
        window with the step running at `t`, and make its KV state what stepping would show now."""
        ends = replica.in_flight_ends
        if replica.in_flight is None or len(ends) == 1:
            return
        keep = replica.steps_begun(t)
        if keep < len(ends):
            replica.in_flight_ends = ends[:keep]
            replica.core.stats.busy_s -= float(ends[-1]) - float(ends[keep - 1])
            self._push_step_end(replica, float(ends[keep - 1]))
        replica.sync_kv()

    def _reject_reason(self, spec: RequestSpec) -> str | None:
        total = spec.prompt_len + spec.output_len
        if total > self.max_model_len:
            return f"prompt + output ({total} tokens) exceeds max_model_len {self.max_model_len}"
        for holder, kv, tokens in self._kv_needs(spec):
            if -(-tokens // kv.block_size) > kv.num_blocks:
                return f"needs {tokens} tokens of KV cache, more than the {kv.num_blocks * kv.block_size} {holder} holds"
        return None

    def _kv_needs(self, spec: RequestSpec) -> list[tuple[str, KVCacheManager, int]]:
        """(who, whose KV cache, tokens) `spec` must fit in whole: one replica, all of it."""
        return [("a replica", self.replicas[0].core.kv, spec.prompt_len + spec.output_len)]

    def _on_step_end(self, t: float, window: tuple[SimReplica, int]) -> None:
        replica, window_id = window
        if window_id == replica.window_id:  # else a window cut short has moved its end
            self._end_step(replica, t)

    def _end_step(self, replica: SimReplica, t: float) -> None:
        clock = self.clock
        clock.last_step_t, clock.last_step_index = t, replica.index
        replica.waking = False
        out = replica.in_flight
        if out is not None:
            replica.last_step_end = t
            ends = replica.in_flight_ends
            if len(ends) > 1:
                replica.core.begin_decode_window(len(ends))
            result = replica.core.run_decode_window(out, ends)
            replica.in_flight = None
            for req in result.finished:
                replica.fleet.finished(replica)
                self._finished(replica, req, t)
            self._step_ended(replica, t)
            self._stop_if_drained(replica, t)
        self._start_step(replica, t)

    def _step_ended(self, replica: SimReplica, t: float) -> None:
        """`replica`'s step (or window) ended at `t`, its outcome applied, before the next one is scheduled
        (a hook: a migration stops its request on the source here)."""

    def _finished(self, replica: SimReplica, req: Request, t: float) -> None:
        """`req` finished on `replica` at `t`."""
        _, record = self._live.pop(id(req))
        _fill_record(record, req)
        self._end(record, t)

    def _scheduled(self, replica: SimReplica, out: SchedulerOutput, t: float) -> None:
        """`replica` scheduled `out` at `t` (a hook: a disaggregated cluster starts KV loads here)."""

    def _start_step(self, replica: SimReplica, t: float) -> None:
        core = replica.core
        if not core.has_work():
            return
        out = core.schedule(t)
        self._scheduled(replica, out, t)
        while out.is_empty and out.preempted and core.has_work():
            # The only running requests were preempted, which skips admission for this step: like
            # vLLM's next iteration, schedule again now (the running set is empty: nothing to preempt).
            out = core.schedule(t)
            self._scheduled(replica, out, t)
        if out.is_empty:
            return
        if self.explain is not None:
            self.explain.offer(t, replica.index, out.shape)
        steps = core.steady_decode_steps(out, MAX_WINDOW_STEPS) if self.fast_decode else 0
        # Inside a busy spell a step starts when the last one ends; after an idle gap the
        # first step is slower (calibrated models only: the others give 0).
        start = t + replica.executor.idle_penalty(t - replica.last_step_end, t) if t > replica.last_step_end else t
        if steps > 1:
            # Fused up to the first completion or KV shortage; a request routed here cuts it short.
            durations = replica.executor.decode_durations(out, steps, start)
            ends = np.cumsum(np.concatenate(([start], durations)))[1:]
        else:
            ends = np.array([start + replica.executor.duration(out, start)])
        replica.start_window(out, ends)
        core.stats.busy_s += float(ends[-1]) - t
        self._push_step_end(replica, float(ends[-1]))

    def _push_step_end(self, replica: SimReplica, t: float) -> None:
        replica.window_id += 1
        self._events.push(t, Priority.STEP_END, self._on_step_end, (replica, replica.window_id), key=replica.index)

    def _end(self, record: RequestRecord, t: float) -> None:
        """A request ended (finished or rejected): free its slot, release the turns that follow it."""
        if self.stop_when is not None and self.stop_when(record, self._total):
            self._stopped = True  # the caller has its answer: what is left would not change it
        request_id = record.request_id
        self._ended += 1
        self._last_end_s = t
        self._free_slots += 1
        if self._held:
            # The longest-held request takes the slot, before anything due now.
            self._events.push(t, Priority.RELEASED, self._release, self._held.popleft())
        for kid in self._followers.pop(request_id, ()):
            self._events.push(t + kid.think_s, Priority.ARRIVAL, self._on_arrival, kid, key=1)

    def _release(self, t: float, spec: RequestSpec) -> None:
        self._arrive(spec, t)

    # ---- lifecycle -------------------------------------------------------------------
    def _on_change(self, t: float, change: FleetChange) -> None:
        self._push_next_change()
        if self._ended == self._total:
            return  # the run is over: its state seconds end with the last request
        for replica in to_start(self.replicas, change.start):
            replica.core.kv.reset_prefix_cache()  # a restarted engine comes up with an empty cache
            self._set_state(replica, ReplicaState.STARTING, t)
            self._starts[replica.index] += 1
            self._events.push(t + change.startup_s, Priority.LIFECYCLE, self._on_started,
                              (replica, self._starts[replica.index]), key=replica.index)
        for replica in to_drain(self.replicas, change.drain):
            if replica.state is ReplicaState.STARTING:
                self._set_state(replica, ReplicaState.STOPPED, t)  # never served: nothing to finish
                continue
            self._set_state(replica, ReplicaState.DRAINING, t)
            self._draining(replica, t)
            self._stop_if_drained(replica, t)

    def _on_started(self, t: float, started: tuple[SimReplica, int]) -> None:
        replica, start = started
        if start != self._starts[replica.index] or replica.state is not ReplicaState.STARTING:
            return  # drained while starting
        self._set_state(replica, ReplicaState.SERVING, t)
        unrouted, self._unrouted = self._unrouted, deque()
        for request in unrouted:
            self._deliver(t, request)

    def _draining(self, replica: SimReplica, t: float) -> None:
        """`replica` has begun to drain at `t` (a hook: live migration moves its requests out)."""

    def _stop_if_drained(self, replica: SimReplica, t: float) -> None:
        if replica.state is ReplicaState.DRAINING and replica.is_empty():
            self._set_state(replica, ReplicaState.STOPPED, t)

    def _set_state(self, replica: SimReplica, state: ReplicaState, t: float) -> None:
        self.replicas.set_state(replica, state, t)
        self._timeline.append((t, replica.index, state.value))

    def _lifecycle_result(self, end_s: float) -> dict:
        """Each replica's state changes and the replica-seconds in each state (up: billed)."""
        seconds = {state.value: sum(r.seconds_in(state, end_s) for r in self.replicas)
                   for state in (ReplicaState.STARTING, ReplicaState.SERVING, ReplicaState.DRAINING)}
        return {"changes": [{"t_s": t, "replica": index, "state": state} for t, index, state in self._timeline],
                "replica_s": {**seconds, "up": sum(seconds.values())}, "end_s": end_s}

    # ---- results ---------------------------------------------------------------------
    def _result(self, events: int) -> SimResult:
        for req, record in self._live.values():
            _fill_record(record, req)
            record.rejected_reason = "unfinished when the simulation ended"
        self._live.clear()
        records = [r for _, _, r in sorted(self._records, key=lambda x: (x[0], x[1]))]
        replicas = []
        queries = hits = preemptions = 0
        end_s = self._last_end_s if self._ended == self._total else self.clock.now
        for rep in self.replicas:
            kv = rep.core.kv
            stats = rep.core.stats
            queries += kv.stats.queries
            hits += kv.stats.hits
            preemptions += rep.core.scheduler.num_preemptions
            replicas.append({
                "index": rep.index,
                "requests": rep.num_routed,
                "completed": rep.num_finished,
                "preemptions": rep.core.scheduler.num_preemptions,
                "steps": stats.steps,
                "busy_s": stats.busy_s,
                "tokens": stats.tokens,
                "kv_blocks": kv.num_blocks,
                "peak_kv_usage": stats.peak_kv_usage,
                "prefix_cache_hit_rate": kv.stats.hit_rate,
                "started_s": rep.started_s,
                "stopped_s": rep.stopped_s,
                "serving_s": rep.seconds_in(ReplicaState.SERVING, end_s),
                "up_s": sum(rep.seconds_in(state, end_s) for state in ReplicaState if state is not ReplicaState.STOPPED),
            })
        result = SimResult(records, self.itl, replicas, queries, hits, preemptions, self.clock.now, events,
                           prediction=_prediction_errors(self.replicas))
        if self._changes:
            result.lifecycle = self._lifecycle_result(end_s)
        if self.recorder is not None:
            result.timeseries = self.recorder.series(len(self.replicas))
        return result


def _prediction_errors(replicas: Sequence[SimReplica]) -> dict | None:
    """The error of every engine's predictions, pooled (None when no engine predicts)."""
    errors = PredictionErrors()
    predicting = False
    for rep in replicas:
        for core in getattr(rep.core, "cores", (rep.core,)):  # a lockstep replica's ranks
            if core.predictor is not None:
                predicting = True
                errors.merge(core.prediction_errors)
    return errors.summary() if predicting else None


def _fill_record(record: RequestRecord, req: Request) -> None:
    record.output_tokens = req.num_output
    record.first_scheduled_s = req.first_scheduled_s
    record.first_token_s = req.first_token_s
    record.finish_s = req.finish_s
    record.cached_tokens = max(req.cached_tokens, 0)
    record.preemptions = req.preemptions
