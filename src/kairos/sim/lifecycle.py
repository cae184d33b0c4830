"""Scheduled changes of a fleet: replicas started (after a startup time) and drained, and which ones."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kairos.sim.replica import ReplicaState, SimReplica


@dataclass(frozen=True, slots=True)
class FleetChange:
    """At `at_s`, bring `start` stopped replicas up (serving after `startup_s`), or drain `drain` of
    the replicas up (serving or starting)."""

    at_s: float
    start: int = 0
    startup_s: float = 0.0
    drain: int = 0


def to_start(replicas: Sequence[SimReplica], count: int) -> list[SimReplica]:
    """The `count` stopped replicas with the lowest indices (spares first built, or drained ones)."""
    return [r for r in replicas if r.state is ReplicaState.STOPPED][:count]


def to_drain(replicas: Sequence[SimReplica], count: int) -> list[SimReplica]:
    """The `count` replicas up (serving or starting) started last (ties: the highest index): a
    scale-in gives back the capacity a scale-out added first."""
    up = [r for r in replicas if r.state in (ReplicaState.SERVING, ReplicaState.STARTING)]
    up.sort(key=lambda r: (r.started_s or 0.0, r.index), reverse=True)
    return up[:count]
