"""Simulated replicas: an engine core plus its executor, seen by routers through ReplicaView, and
the set of them a router chooses among."""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import overload

import numpy as np

from kairos.engine.block_hash import prompt_prefix_hashes
from kairos.engine.core import EngineCore
from kairos.engine.request import Request
from kairos.engine.scheduler import SchedulerOutput
from kairos.sim.executor import SimExecutor
from kairos.workload.spec import RequestSpec


class PrefixHasher:
    """Block hashes of an arriving request's shareable prompt, computed once for all replicas."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._spec: RequestSpec | None = None
        self._hashes: list[int] = []

    def hashes(self, spec: RequestSpec) -> list[int]:
        if spec is not self._spec:
            self._hashes = prompt_prefix_hashes(spec, self.block_size)
            self._spec = spec
        return self._hashes


@dataclass(slots=True)
class SimClock:
    """The simulation's time, shared with the replicas: `now` and the latest step end (its time and
    replica), which decide what a router reading a replica mid-window sees."""

    now: float = 0.0
    last_step_t: float = -math.inf
    last_step_index: int = -1


class ReplicaState(Enum):
    """Where a replica is in its life: only a SERVING one is routed new requests."""

    STARTING = "starting"  # brought up (loading weights, warming up): costs a GPU, serves nothing yet
    SERVING = "serving"
    DRAINING = "draining"  # finishes what it holds, takes nothing new
    STOPPED = "stopped"  # a spare not started yet, or drained: costs nothing


class SimReplica:
    """One engine replica in simulation; implements the router's ReplicaView."""

    def __init__(self, index: int, core: EngineCore, executor: SimExecutor, hasher: PrefixHasher,
                 state: ReplicaState = ReplicaState.SERVING) -> None:
        self.index = index
        self.core = core
        self.executor = executor
        self._hasher = hasher
        self.clock = SimClock()  # the simulation's, once it runs this replica
        self.fleet: ReplicaSet | None = None  # the set routers choose it from, which tracks its load
        self.in_flight: SchedulerOutput | None = None  # the step (or window) now running
        self.in_flight_ends = None
        self.kv_synced = 0  # steps of the window now running whose KV slots are allocated
        self.waking = False  # a start-of-step event is queued for this idle replica
        self.window_id = 0  # id of the latest queued step end; older ones are stale
        self.last_step_end = -math.inf  # when its last step ended: a later start found it idle
        self.num_routed = 0
        self.num_finished = 0
        self.state = state
        self.state_since = 0.0
        self.state_s = dict.fromkeys(ReplicaState, 0.0)  # seconds spent in each state before `state_since`
        self.started_s: float | None = 0.0 if state is ReplicaState.SERVING else None
        self.stopped_s: float | None = None

    def enter(self, state: ReplicaState, t: float) -> None:
        """Move to `state` at `t`, adding the time spent in the last one."""
        self.state_s[self.state] += t - self.state_since
        self.state, self.state_since = state, t
        if state is ReplicaState.STARTING or (state is ReplicaState.SERVING and self.started_s is None):
            self.started_s = t
        elif state is ReplicaState.STOPPED:
            self.stopped_s = t

    def seconds_in(self, state: ReplicaState, end_s: float) -> float:
        """Seconds spent in `state` up to `end_s`."""
        return self.state_s[state] + (end_s - self.state_since if self.state is state else 0.0)

    def is_empty(self) -> bool:
        """Holds no request and no KV block for one (routed, running, queued or held for a copy)."""
        return (self.num_outstanding() == 0 and self.in_flight is None and not self.core.has_work()
                and self.core.kv.num_used_blocks == 0)

    def start_window(self, out: SchedulerOutput, ends: np.ndarray) -> None:
        """A step (or a fused window of decode steps) starts; `ends[j]` is when step j+1 ends.
        Scheduling gave the first step its KV slots."""
        self.in_flight, self.in_flight_ends, self.kv_synced = out, ends, 1

    def steps_begun(self, t: float) -> int:
        """How many steps of the window now running have started by `t`.

        Step j+1 (j >= 1) starts when step j ends. A request sent at `t` by a step end
        at `t` (a follow-up turn, a freed client slot) comes after the step ends of lower
        replicas at `t`, whose next steps stepping has begun."""
        ends = self.in_flight_ends
        clock = self.clock
        begun = clock.last_step_t == t and self.index < clock.last_step_index
        return 1 + int(np.searchsorted(ends[:-1], t, side="right" if begun else "left"))

    def sync_kv(self) -> None:
        """Allocate the KV slots of every step of the running window begun by now, as stepping one
        iteration at a time would have (the window itself runs on)."""
        if self.in_flight is None or len(self.in_flight_ends) == 1:
            return
        begun = self.steps_begun(self.clock.now)
        if begun > self.kv_synced:
            self.core.begin_decode_window(begun)
            self.kv_synced = begun

    # ---- ReplicaView -------------------------------------------------------------
    # Inside a window nothing is admitted, preempted or finished: the counts hold still;
    # the KV state grows with the steps, so its readings sync first.
    def num_running(self) -> int:
        return self.core.num_running

    def num_waiting(self) -> int:
        return self.core.num_waiting

    def num_outstanding(self) -> int:
        return self.num_routed - self.num_finished

    def kv_usage(self) -> float:
        self.sync_kv()
        return self.core.kv.usage()

    def kv_demand(self) -> float:
        self.sync_kv()
        kv = self.core.kv
        return (kv.num_used_blocks + self.core.queued_blocks()) / kv.num_blocks

    def kv_free_blocks(self) -> int:
        self.sync_kv()
        return self.core.kv.num_free_blocks

    def head_blocks(self) -> int:
        return self.core.head_blocks()

    def lightest_blocks(self) -> int:
        self.sync_kv()
        kv = self.core.kv
        return min((len(kv.block_table(r)) for r in self.decoding()), default=0)

    def decoding(self) -> list[Request]:
        """The running requests past their prompt, those a migration may move."""
        return [r for r in self.core.scheduler.running if r.num_computed >= r.num_tokens - 1 and r.num_output]

    def cache_usage(self) -> float:
        self.sync_kv()
        kv = self.core.kv
        return kv.num_cached_blocks / kv.num_blocks

    def cached_prefix_tokens(self, spec: RequestSpec) -> int:
        self.sync_kv()
        return self.core.kv.probe(self._hasher.hashes(spec)) * self._hasher.block_size


class _ReplicaList(Sequence[SimReplica]):
    """Replicas held in a list (`replicas`), read as a sequence."""

    replicas: list[SimReplica]

    def __len__(self) -> int:
        return len(self.replicas)

    @overload
    def __getitem__(self, i: int) -> SimReplica: ...
    @overload
    def __getitem__(self, i: slice) -> list[SimReplica]: ...
    def __getitem__(self, i: int | slice) -> SimReplica | list[SimReplica]:
        return self.replicas[i]

    def __iter__(self) -> Iterator[SimReplica]:
        return iter(self.replicas)


class ReplicaSet(_ReplicaList):
    """All the replicas, by index, and the serving ones a router chooses among (`serving`), with
    what it would otherwise scan all of them for kept up to date as requests are routed and
    finish: the least-outstanding serving replica in O(log replicas) (a heap of (outstanding,
    index) with stale entries, and those of replicas no longer serving, skipped)."""

    def __init__(self, replicas: list[SimReplica], clock: SimClock) -> None:
        self.replicas = replicas
        for replica in replicas:
            replica.clock, replica.fleet = clock, self
        self.serving = ServingReplicas(self, [r for r in replicas if r.state is ReplicaState.SERVING])
        self._load: list[tuple[int, int, SimReplica]] = []
        self._rebuild()

    def set_state(self, replica: SimReplica, state: ReplicaState, t: float) -> None:
        """`replica` enters `state` at `t`; it joins or leaves the serving ones routers see."""
        was_serving = replica.state is ReplicaState.SERVING
        replica.enter(state, t)
        serving = self.serving.replicas
        if was_serving and state is not ReplicaState.SERVING:
            serving.remove(replica)
        elif state is ReplicaState.SERVING and not was_serving:
            bisect.insort(serving, replica, key=lambda r: r.index)
            self._loaded(replica)

    def moved(self, source: SimReplica, target: SimReplica) -> None:
        """A request routed to `source` is now `target`'s (a live migration)."""
        self.unrouted(source)
        self.routed(target)

    def routed(self, replica: SimReplica) -> None:
        replica.num_routed += 1
        self._loaded(replica)

    def unrouted(self, replica: SimReplica) -> None:
        """A request routed to `replica` left it before finishing (moved or sent elsewhere)."""
        replica.num_routed -= 1
        self._loaded(replica)

    def finished(self, replica: SimReplica) -> None:
        replica.num_finished += 1
        self._loaded(replica)

    def least_outstanding(self) -> SimReplica:
        """The serving replica with the fewest outstanding requests (ties: lowest index)."""
        load = self._load
        while load[0][0] != load[0][2].num_outstanding() or load[0][2].state is not ReplicaState.SERVING:
            heapq.heappop(load)
        return load[0][2]

    def _loaded(self, replica: SimReplica) -> None:
        if replica.state is not ReplicaState.SERVING:
            return  # routers do not see it: its entry is pushed when it serves again
        heapq.heappush(self._load, (replica.num_outstanding(), replica.index, replica))
        if len(self._load) > 4 * len(self.serving) + 64:  # drop the stale entries
            self._rebuild()

    def _rebuild(self) -> None:
        self._load = [(r.num_outstanding(), r.index, r) for r in self.serving]
        heapq.heapify(self._load)


class ServingReplicas(_ReplicaList):
    """The serving replicas in index order: what a router is given (LoadIndexed through its set)."""

    def __init__(self, fleet: ReplicaSet, replicas: list[SimReplica]) -> None:
        self._fleet = fleet
        self.replicas = replicas

    def least_outstanding(self) -> SimReplica:
        return self._fleet.least_outstanding()
