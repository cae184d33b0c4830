"""Migration policies: which replica sheds a running request to which, checked every interval (Llumnix).

A policy reads the replicas' load through ReplicaView and names a (source,
destination) pair, or none; the simulator picks the request to move (the
decoding one with the fewest tokens: the cheapest copy, as Llumnix prefers) and
runs the migration. Replicas already sending or receiving one are left out, and
so are those not serving: a draining replica sheds its requests apart from the
policy, each to the `emptiest` serving replica (Llumnix's scale-in).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from kairos.cluster.replica import ReplicaView
from kairos.registry import Registry

MIGRATION_POLICIES: Registry[type] = Registry("migration policy")


class MigrationPolicy(Protocol):
    """Names one migration to start now, as (source index, destination index), or None."""

    name: str

    def choose(self, replicas: Sequence[ReplicaView]) -> tuple[int, int] | None: ...


@MIGRATION_POLICIES.register("imbalance")
@dataclass(frozen=True)
class Imbalance:
    """Move a request from the replica whose KV cache is fullest to the emptiest when their usage
    differs by more than `gap` (Llumnix's load balancing, its load read as KV usage)."""

    gap: float = 0.2
    name: str = field(default="imbalance", init=False)

    def load(self, replica: ReplicaView) -> float:
        return replica.kv_usage()

    def choose(self, replicas: Sequence[ReplicaView]) -> tuple[int, int] | None:
        if len(replicas) < 2:
            return None
        load = {r.index: self.load(r) for r in replicas}
        source = max(replicas, key=lambda r: (load[r.index], -r.index))
        target = min(replicas, key=lambda r: (load[r.index], r.index))
        if source.num_running() and load[source.index] - load[target.index] > self.gap:
            return source.index, target.index
        return None


@MIGRATION_POLICIES.register("virtual_usage")
@dataclass(frozen=True)
class VirtualUsage(Imbalance):
    """Move a request from the replica with the most KV demand (blocks held plus queued requests') to
    the least when they differ by more than `gap`: Llumnix's balancing on its virtual usage, the signal
    the `least_demand` router reads too, so a replica a migration relieves is not refilled at once."""

    name: str = field(default="virtual_usage", init=False)

    def load(self, replica: ReplicaView) -> float:
        return replica.kv_demand()


@MIGRATION_POLICIES.register("kv_pressure")
@dataclass(frozen=True)
class KvPressure:
    """Relieve a replica about to preempt: its KV cache above `high` with requests waiting, to the
    emptiest replica below `low` with none waiting (Llumnix's de-fragmentation for queued requests)."""

    high: float = 0.9
    low: float = 0.6
    name: str = field(default="kv_pressure", init=False)

    def choose(self, replicas: Sequence[ReplicaView]) -> tuple[int, int] | None:
        if len(replicas) < 2:
            return None
        usage = {r.index: r.kv_usage() for r in replicas}
        pressed = [r for r in replicas if usage[r.index] > self.high and r.num_waiting() and r.num_running()]
        if not pressed:
            return None
        source = max(pressed, key=lambda r: (usage[r.index], -r.index))
        # A replica with a queue of its own would only trade one queue for another.
        idle = [r for r in replicas if not r.num_waiting() and usage[r.index] < self.low]
        if not idle:
            return None
        return source.index, min(idle, key=lambda r: (usage[r.index], r.index)).index


def emptiest(replicas: Sequence[ReplicaView]) -> int | None:
    """The index of the replica whose KV cache is least used (ties: lowest index), None if none."""
    if not replicas:
        return None
    return min(replicas, key=lambda r: (r.kv_usage(), r.index)).index


def make_migration_policy(name: str, **knobs: float) -> MigrationPolicy:
    """Migration policy `name` with its knobs (unknown knobs: a one-line error listing the accepted ones)."""
    cls = MIGRATION_POLICIES.get(name)
    MIGRATION_POLICIES.check_knobs(name, knobs)
    policy: MigrationPolicy = cls(**knobs)
    return policy
