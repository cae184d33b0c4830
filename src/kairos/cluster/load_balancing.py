"""Load-only routing policies: each reads replica load signals and nothing about content."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kairos.cluster.replica import ReplicaView
from kairos.workload.spec import RequestSpec


@dataclass
class RoundRobin:
    """Cycle through the replicas in order.

    Reads: nothing. Knobs: none. Trade-off: perfectly even request counts and zero
    cost, but blind to request size, load and cache content.
    """

    name: str = field(default="round_robin", init=False)
    _cursor: int = field(default=0, init=False, repr=False)

    def route(self, spec: RequestSpec, replicas: Sequence[ReplicaView]) -> int:
        chosen = replicas[self._cursor % len(replicas)]
        self._cursor += 1
        return chosen.index


@dataclass
class LeastOutstanding:
    """Send to the replica with the fewest routed-but-unfinished requests (ties: lowest index).

    Reads: num_outstanding. Knobs: none. Trade-off: adapts to slow replicas and long
    requests, but counts a 10-token and a 10k-token request the same and scatters
    requests that share a prefix.
    """

    name: str = field(default="least_outstanding", init=False)

    def route(self, spec: RequestSpec, replicas: Sequence[ReplicaView]) -> int:
        least = getattr(replicas, "least_outstanding", None)
        if least is not None:  # a LoadIndexed set: the same choice without reading every replica
            return least().index
        return min(replicas, key=lambda r: (r.num_outstanding(), r.index)).index


@dataclass
class LeastKv:
    """Send to the replica whose KV cache is least full (ties: fewer outstanding, lower index).

    Reads: kv_usage, num_outstanding. Knobs: none. Trade-off: steers away from
    replicas close to preempting, but KV usage lags admission (queued requests
    hold no blocks yet), so bursts can pile onto one replica.
    """

    name: str = field(default="least_kv", init=False)

    def route(self, spec: RequestSpec, replicas: Sequence[ReplicaView]) -> int:
        return min(replicas, key=lambda r: (r.kv_usage(), r.num_outstanding(), r.index)).index


@dataclass
class LeastDemand:
    """Send to the replica with the least KV demand: blocks held plus queued requests' (Llumnix's dispatch).

    Reads: kv_demand, num_outstanding. Knobs: none. Trade-off: unlike least_kv it
    counts what a replica's queue will take, so a burst does not pile onto the
    replica whose blocks are free but promised.
    """

    name: str = field(default="least_demand", init=False)

    def route(self, spec: RequestSpec, replicas: Sequence[ReplicaView]) -> int:
        return min(replicas, key=lambda r: (r.kv_demand(), r.num_outstanding(), r.index)).index


@dataclass
class PowerOfTwo:
    """Sample two distinct replicas at random; send to the one with fewer outstanding.

    Reads: num_outstanding of two replicas. Knobs: `seed` (numpy Generator).
    Trade-off: nearly the balance of least-outstanding while reading only two
    replicas, which matters when load reports are stale or costly to gather; the
    randomness avoids herding onto one momentarily idle replica.
    """

    seed: int = 0
    name: str = field(default="power_of_two", init=False)
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def route(self, spec: RequestSpec, replicas: Sequence[ReplicaView]) -> int:
        if len(replicas) == 1:
            return replicas[0].index
        first = int(self._rng.integers(len(replicas)))
        second = int(self._rng.integers(len(replicas) - 1))
        if second >= first:  # draw from the others, so the two are distinct
            second += 1
        pair = (replicas[first], replicas[second])
        return min(pair, key=lambda r: (r.num_outstanding(), r.index)).index
