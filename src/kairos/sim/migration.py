"""Live migration of running requests between replicas, in stages as Llumnix runs it.

Every `interval_s` the migration policy (kairos.cluster.migration) may name a
source and a destination among the serving replicas; a draining replica is a
source first (Llumnix's scale-in), to the serving replica whose KV cache is
emptiest. The source's decoding request with the fewest tokens moves.

The destination reserves blocks first (Llumnix's pre-allocation): the tokens
computed so far and one block more, grown at each stage; it counts the request
as outstanding from then, so routers see the load coming. Where it cannot
reserve, the migration does not start (or, mid-way, is aborted and the
reservation freed): the request runs on where it is. While it keeps decoding on
the source, its KV is copied over the destination's link (shared with the other
copies into that replica, `TransferLink`), stage after stage, each stage the
tokens computed during the one before; once a stage leaves at most one block's
worth (or after `max_stages`), the request stops on the source and the rest is
copied into its reserved blocks: that last copy is the downtime. The
destination then runs it as a landed remote prefill (kairos.engine: its last
token is recomputed as the next decode step samples), and the source frees its
blocks. A request that finishes or is preempted on the source while its live
stages run is not moved.

A draining replica's queued requests that never ran are routed again, at once,
to the serving replicas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from kairos.cluster.migration import MigrationPolicy, emptiest
from kairos.cluster.router import Router
from kairos.engine.request import Request, RequestStatus
from kairos.hardware import Link
from kairos.metrics.itl import ItlCollector
from kairos.metrics.percentiles import stats_ms
from kairos.sim.events import Priority
from kairos.sim.lifecycle import FleetChange
from kairos.sim.replica import ReplicaState, SimReplica
from kairos.sim.runner import ProgressFn, SimResult, Simulation
from kairos.sim.transfers import TransferLinks
from kairos.workload.spec import RequestSpec


@dataclass(slots=True)
class _Migration:
    """One request on its way from `source` to `target`."""

    req: Request  # on the source
    source: SimReplica
    target: SimReplica
    reserved: Request  # its blocks on the target, the request there once paused
    copied: int = 0  # tokens whose KV the finished stages copied
    staged: int = 0  # tokens the stage now running copies up to
    stages: int = 0
    paused_s: float | None = None  # when it stopped on the source
    nbytes: int = 0


@dataclass(slots=True)
class _Stats:
    migrations: int = 0
    abandoned: int = 0  # finished or preempted on the source before its last stage
    aborted: int = 0  # the destination could not grow its reservation
    rerouted: int = 0  # queued on a draining replica, sent to another before running
    bytes_moved: int = 0
    downtime_s: list[float] = field(default_factory=list)
    stages: list[int] = field(default_factory=list)


class MigratingSimulation(Simulation):
    """A colocated Simulation whose replicas move running requests between them (see the module docstring).

    `kv_bytes(tokens)` is what one copy of that many tokens' KV moves over the busiest GPU pair.
    """

    def __init__(self, specs: Sequence[RequestSpec], replicas: list[SimReplica], router: Router, *,
                 policy: MigrationPolicy, link: Link, kv_bytes: Callable[[int], int], interval_s: float,
                 max_stages: int, max_model_len: int, itl: ItlCollector, fast_decode: bool = True,
                 progress: ProgressFn | None = None, request_latency: Callable[[int], float] | None = None,
                 concurrency: int | None = None, lifecycle: Sequence[FleetChange] = ()) -> None:
        super().__init__(specs, replicas, router, max_model_len=max_model_len, itl=itl, fast_decode=fast_decode,
                         progress=progress, request_latency=request_latency, concurrency=concurrency,
                         lifecycle=lifecycle)
        self.policy = policy
        self.link = link
        self.kv_bytes = kv_bytes
        self.interval_s = interval_s
        self.max_stages = max_stages
        self._transfers = TransferLinks(self._events, link, [r.index for r in replicas], self._copied)
        # By the id of the request whose KV a copy carries: the source's while live, the target's for the last.
        self._moving: dict[int, _Migration] = {}
        self._busy: set[int] = set()  # replicas sending or receiving a migration
        self._pausing: dict[int, list[_Migration]] = {}  # by source replica: stop when its step ends
        self._stats = _Stats()

    def run(self) -> SimResult:
        self._events.push(self.interval_s, Priority.CHECK, self._on_check)
        return super().run()

    # ---- the policy's check --------------------------------------------------------
    def _on_check(self, t: float, _: object) -> None:
        # Look again while anything else can still happen: alone on the heap, checks would run for ever.
        if self._ended < self._total and len(self._events):
            self._events.push(t + self.interval_s, Priority.CHECK, self._on_check)
        free = [r for r in self.replicas.serving if r.index not in self._busy]
        for source in self.replicas:
            if source.state is ReplicaState.DRAINING and source.index not in self._busy:
                target = emptiest(free)
                if target is not None and self._start(source, self.replicas[target], t):
                    free = [r for r in free if r.index != target]
        pair = self.policy.choose(free)
        if pair is not None and pair[0] != pair[1]:
            self._start(self.replicas[pair[0]], self.replicas[pair[1]], t)

    def _start(self, source: SimReplica, target: SimReplica, t: float) -> bool:
        """Start moving the source's cheapest decoding request, if the target can reserve its blocks."""
        decoding = source.decoding()
        if not decoding:
            return False
        # Token counts as of now: a fused window applies its steps only when it ends.
        tokens = {id(r): _computed_by(source, r, t) + 1 for r in decoding}
        req = min(decoding, key=lambda r: (tokens[id(r)], r.uid))
        self._cut_window(target, t)
        reserved = target.core.reserve(req, tokens[id(req)] + target.core.kv.block_size)
        if reserved is None:
            return False
        self.replicas.routed(target)
        self._busy.update((source.index, target.index))
        self._stage(_Migration(req, source, target, reserved), t)
        return True

    # ---- stages ----------------------------------------------------------------------
    def _stage(self, m: _Migration, t: float) -> None:
        """Copy, live, the KV computed since the last stage, into blocks the target holds for it."""
        m.staged = _computed_by(m.source, m.req, t)
        if m.stages:
            target = m.target
            self._cut_window(target, t)
            if not target.core.reserve_more(m.reserved, m.staged + 1 + target.core.kv.block_size):
                self._abort(m, t)
                return
        m.stages += 1
        self._send(m, m.staged - m.copied, t, id(m.req))

    def _send(self, m: _Migration, tokens: int, t: float, key: int) -> None:
        nbytes = self.kv_bytes(tokens) if tokens > 0 else 0
        m.nbytes += nbytes
        self._moving[key] = m
        self._transfers.start(m.target.index, key, nbytes, t)

    def _copied(self, key: int, t: float) -> None:
        m = self._moving.pop(key)
        if m.paused_s is None:
            self._stage_done(m, t)
        else:
            self._landed(m, t)

    def _stage_done(self, m: _Migration, t: float) -> None:
        req, source = m.req, m.source
        m.copied = m.staged
        if self._abandoned(m, t):
            return
        left = _computed_by(source, req, t) - m.copied
        if left > source.core.kv.block_size and m.stages < self.max_stages:
            self._stage(m, t)
            return
        # Stop and copy, once the step running now ends (its tokens are the request's).
        if source.in_flight is None:
            self._pause(m, t)
            return
        self._cut_window(source, t)
        self._pausing.setdefault(source.index, []).append(m)

    def _step_ended(self, replica: SimReplica, t: float) -> None:
        for m in self._pausing.pop(replica.index, ()):
            self._pause(m, t)

    def _pause(self, m: _Migration, t: float) -> None:
        """The request leaves the source's batch; the rest of its KV is copied into its reserved blocks."""
        req, source, target = m.req, m.source, m.target
        if self._abandoned(m, t):
            return
        self._cut_window(target, t)
        if not target.core.load_reserved(m.reserved, req):
            self._abort(m, t)
            return
        source.core.detach(req)
        self.replicas.unrouted(source)
        m.paused_s = t
        m.staged = req.num_computed
        moved = m.reserved
        moved.replica = target.index
        _, record = self._live.pop(id(req))
        record.replica = target.index
        self._live[id(moved)] = (moved, record)
        self._send(m, m.staged - m.copied, t, id(moved))

    def _abandoned(self, m: _Migration, t: float) -> bool:
        """Whether the request finished or was preempted on the source meanwhile: then nothing moves."""
        if m.req.status == RequestStatus.RUNNING:
            return False
        self._stats.abandoned += 1
        self._drop(m, t)
        return True

    def _abort(self, m: _Migration, t: float) -> None:
        """The target could not hold the request's KV: it runs on where it is."""
        self._stats.aborted += 1
        self._drop(m, t)

    def _drop(self, m: _Migration, t: float) -> None:
        target = m.target
        self._cut_window(target, t)
        target.core.release_reservation(m.reserved)
        self.replicas.unrouted(target)
        self._wake(target, t)
        self._busy.difference_update((m.source.index, target.index))
        self._stop_if_drained(target, t)

    def _draining(self, replica: SimReplica, t: float) -> None:
        """Route the queued requests that never ran here to the serving replicas."""
        queued = [r for r in replica.core.scheduler.waiting
                  if r.status == RequestStatus.WAITING and r.first_scheduled_s is None]
        if not queued:
            return
        self._cut_window(replica, t)
        for req in queued:
            replica.core.withdraw(req)
            self.replicas.unrouted(replica)
            _, record = self._live.pop(id(req))
            self._stats.rerouted += 1
            self._deliver(t, (req.spec, record))

    def _landed(self, m: _Migration, t: float) -> None:
        target, source = m.target, m.source
        assert m.paused_s is not None
        self._cut_window(target, t)
        target.core.remote_kv_landed(m.reserved)
        self._wake(target, t)
        self._cut_window(source, t)
        source.core.release_held(m.req)
        self._wake(source, t)
        self._busy.difference_update((source.index, target.index))
        self._stop_if_drained(source, t)
        stats = self._stats
        stats.migrations += 1
        stats.bytes_moved += m.nbytes
        stats.downtime_s.append(t - m.paused_s)
        stats.stages.append(m.stages)

    # ---- results ---------------------------------------------------------------------
    def _result(self, events: int) -> SimResult:
        result = super()._result(events)
        stats = self._stats
        result.migration = {
            "policy": self.policy.name, "migrations": stats.migrations, "abandoned": stats.abandoned,
            "aborted": stats.aborted, "rerouted": stats.rerouted,
            "kv_bytes": stats.bytes_moved,
            "downtime_ms": stats_ms(stats.downtime_s) if stats.downtime_s else None,
            "mean_stages": float(np.mean(stats.stages)) if stats.stages else None,
        }
        return result


def _computed_by(replica: SimReplica, req: Request, t: float) -> int:
    """Tokens of `req` whose KV `replica` has computed by `t`, steps of its fused window included
    (the window applies them all when it ends)."""
    ends = replica.in_flight_ends
    if replica.in_flight is None or ends is None or len(ends) == 1 or req not in replica.core.scheduler.running:
        return req.num_computed
    return req.num_computed + int(np.searchsorted(ends, t, side="right"))
