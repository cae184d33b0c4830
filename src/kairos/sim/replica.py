"""A simulated replica: an engine core plus its executor, seen by routers through ReplicaView."""

from __future__ import annotations

import math

from kairos.engine.block_hash import prompt_prefix_hashes
from kairos.engine.core import EngineCore
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


class SimReplica:
    """One engine replica in simulation; implements the router's ReplicaView."""

    def __init__(self, index: int, core: EngineCore, executor: SimExecutor, hasher: PrefixHasher) -> None:
        self.index = index
        self.core = core
        self.executor = executor
        self._hasher = hasher
        self.in_flight: SchedulerOutput | None = None  # the step (or window) now running
        self.in_flight_ends = None
        self.waking = False  # a start-of-step event is queued for this idle replica
        self.window_id = 0  # id of the latest queued step end; older ones are stale
        self.last_step_end = -math.inf  # when its last step ended: a later start found it idle
        self.num_routed = 0
        self.num_finished = 0

    # ---- ReplicaView -------------------------------------------------------------
    def num_running(self) -> int:
        return self.core.num_running

    def num_waiting(self) -> int:
        return self.core.num_waiting

    def num_outstanding(self) -> int:
        return self.num_routed - self.num_finished

    def kv_usage(self) -> float:
        return self.core.kv.usage()

    def cache_usage(self) -> float:
        kv = self.core.kv
        return kv.num_cached_blocks / kv.num_blocks

    def cached_prefix_tokens(self, spec: RequestSpec) -> int:
        return self.core.kv.probe(self._hasher.hashes(spec)) * self._hasher.block_size
