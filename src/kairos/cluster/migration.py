"""Migration policies: which replica sheds a running request to which, checked every interval (Llumnix).

A policy reads the replicas' load through ReplicaView and names a (source,
destination) pair, or none; the simulator picks the request to move (the
decoding one with the fewest tokens: the cheapest copy, as Llumnix prefers) and
runs the migration. Replicas already sending or receiving one are left out, and
so are those not serving: a draining replica sheds its requests apart from the
policy, each to the `emptiest` serving replica (Llumnix's scale-in).
"""

from __future__ import annotations

import math
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

    def choose(self, replicas: Sequence[ReplicaView]) -> tuple[int, int] | None:
        if len(replicas) < 2:
            return None
        load = {r.index: r.kv_usage() for r in replicas}
        source = max(replicas, key=lambda r: (load[r.index], -r.index))
        target = min(replicas, key=lambda r: (load[r.index], r.index))
        if source.num_running() and load[source.index] - load[target.index] > self.gap:
            return source.index, target.index
        return None


@MIGRATION_POLICIES.register("balanced")
@dataclass(frozen=True)
class Balanced:
    """Llumnix's pairing on remaining room: a replica's free KV blocks, less those the head of its
    queue needs, per request it runs (the queued head counted as one). A replica with less than
    `threshold` blocks per request sheds to the roomiest one above it, if the move leaves the
    destination above it too and the source still the tighter of the two (no ping-pong).

    Room per request, not usage, is what predicts a preemption: each running request takes a
    slot per step, so a replica holding many short requests runs out sooner than its usage says."""

    threshold: float = 3.0
    name: str = field(default="balanced", init=False)

    def choose(self, replicas: Sequence[ReplicaView]) -> tuple[int, int] | None:
        if len(replicas) < 2:
            return None
        room = {r.index: _room(r) for r in replicas}
        source = min(replicas, key=lambda r: (room[r.index], r.index))
        target = max(replicas, key=lambda r: (room[r.index], -r.index))
        moved = source.lightest_blocks()
        if not moved or room[source.index] >= self.threshold or room[target.index] <= self.threshold:
            return None
        target_after = _room(target, requests=1, blocks=moved)
        if target_after <= self.threshold or _room(source, requests=-1, blocks=-moved) >= target_after:
            return None
        return source.index, target.index


def _room(replica: ReplicaView, requests: int = 0, blocks: int = 0) -> float:
    """Free KV blocks per request on `replica` (Llumnix's remaining steps, counted in blocks), after
    `requests` more requests holding `blocks` more blocks; infinite with no request."""
    count = replica.num_running() + (1 if replica.num_waiting() else 0) + requests
    free = replica.kv_free_blocks() - replica.head_blocks() - blocks
    return free / count if count > 0 else math.inf


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
