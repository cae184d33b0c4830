"""vLLM's data-parallel engine cores of an MoE model, stepping in lockstep behind one server.

With `--data-parallel-size N` vLLM runs N engine cores, each with its own scheduler
and KV cache; the server's internal load balancer sends each request to the core
with the lowest `4 * waiting + running`, first in rank order on a tie. An MoE
model's cores share the expert layers (expert or tensor parallel over all their
GPUs), so they step together: a step ends when the slowest rank's does, and a rank
with nothing to run executes a dummy batch to take part in the collectives.

`LockstepCores` gives the simulator the surface of one `EngineCore` over the N of
them; the executor prices a `LockstepStep` with the step-time model's
`rank_step_time`. Steps are not fused into decode windows: each is one event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kairos.engine.batch_shape import BatchShape
from kairos.engine.core import EngineCore, EngineStats, StepResult
from kairos.engine.request import Request
from kairos.engine.scheduler import SchedulerOutput
from kairos.workload.spec import RequestSpec

# vLLM's DP load balancer weighs a waiting request 4 times a running one.
WAITING_WEIGHT = 4


@dataclass(slots=True)
class LockstepStep:
    """One lockstep step: each rank's scheduler output (empty for a rank running a dummy batch)."""

    outs: list[SchedulerOutput]

    @property
    def is_empty(self) -> bool:
        return all(out.is_empty for out in self.outs)

    @property
    def shapes(self) -> list[BatchShape]:
        return [out.shape for out in self.outs]

    @property
    def shape(self) -> BatchShape:
        """The busiest rank's batch, for step samples (`--explain`)."""
        return max(self.shapes, key=lambda s: s.num_tokens)


class _GroupKV:
    """The ranks' KV caches seen as one, for routers and the run's counters."""

    def __init__(self, cores: list[EngineCore]) -> None:
        self._kvs = [core.kv for core in cores]
        self.block_size = self._kvs[0].block_size
        self.num_blocks = self._kvs[0].num_blocks  # per rank: what one request can use

    def usage(self) -> float:
        return sum(kv.usage() for kv in self._kvs) / len(self._kvs)

    @property
    def num_cached_blocks(self) -> int:
        return sum(kv.num_cached_blocks for kv in self._kvs) // len(self._kvs)

    def probe(self, hashes: list[int]) -> int:
        return max(kv.probe(hashes) for kv in self._kvs)

    @property
    def stats(self) -> _GroupKVStats:
        return _GroupKVStats(sum(kv.stats.queries for kv in self._kvs), sum(kv.stats.hits for kv in self._kvs))


@dataclass(slots=True)
class _GroupKVStats:
    queries: int
    hits: int

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else 0.0


@dataclass(slots=True)
class _GroupScheduler:
    cores: list[EngineCore]

    @property
    def num_preemptions(self) -> int:
        return sum(core.scheduler.num_preemptions for core in self.cores)


class LockstepCores:
    """N data-parallel engine cores of one replica, balanced as vLLM does and stepped together."""

    def __init__(self, cores: list[EngineCore]) -> None:
        self.cores = cores
        self.kv = _GroupKV(cores)
        self.scheduler = _GroupScheduler(cores)
        self.stats = EngineStats()

    def add_request(self, spec: RequestSpec, now: float) -> Request:
        rank = min(range(len(self.cores)), key=lambda i: (
            WAITING_WEIGHT * self.cores[i].num_waiting + self.cores[i].num_running, i))
        return self.cores[rank].add_request(spec, now)

    @property
    def num_running(self) -> int:
        return sum(core.num_running for core in self.cores)

    @property
    def num_waiting(self) -> int:
        return sum(core.num_waiting for core in self.cores)

    def queued_blocks(self) -> int:
        return sum(core.queued_blocks() for core in self.cores)

    def has_work(self) -> bool:
        return any(core.has_work() for core in self.cores)

    def schedule(self, now: float) -> LockstepStep:
        step = LockstepStep([core.schedule(now) if core.has_work() else SchedulerOutput()
                             for core in self.cores])
        usage = self.kv.usage()
        if usage > self.stats.peak_kv_usage:
            self.stats.peak_kv_usage = usage
        return step

    def steady_decode_steps(self, step: LockstepStep, max_steps: int) -> int:
        """Lockstep steps are never fused: 0."""
        return 0

    def run_decode_window(self, step: LockstepStep, ends: np.ndarray) -> StepResult:
        """Apply one lockstep step that ended at ends[0] to every rank that ran real work."""
        result = StepResult()
        for core, out in zip(self.cores, step.outs):
            if out.is_empty:
                continue
            ranked = core.run_decode_window(out, ends)
            result.first_tokens.extend(ranked.first_tokens)
            result.finished.extend(ranked.finished)
            self.stats.tokens += out.num_tokens
        self.stats.steps += 1
        return result
