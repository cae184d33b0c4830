"""What a router may read about a replica (a narrow, read-only view of one engine)."""

from __future__ import annotations

from typing import Protocol

from kairos.workload.spec import RequestSpec


class ReplicaView(Protocol):
    """Load and cache signals of one engine replica, as a router sees them.

    Every method is a read-only probe: routing must never change engine state.
    """

    index: int

    def num_running(self) -> int:
        """Requests currently in the running batch."""
        ...

    def num_waiting(self) -> int:
        """Requests queued (waiting or preempted) in the engine."""
        ...

    def num_outstanding(self) -> int:
        """Requests routed to this replica and not finished yet (queued, running, in flight)."""
        ...

    def kv_usage(self) -> float:
        """Fraction of KV blocks held by requests, 0..1."""
        ...

    def kv_demand(self) -> float:
        """Blocks held plus those the queued requests need to run, over all blocks: may exceed 1
        (Llumnix's virtual usage; KV usage alone lags admission)."""
        ...

    def kv_free_blocks(self) -> int:
        """KV blocks an allocation may take now (free, or cached and evictable)."""
        ...

    def head_blocks(self) -> int:
        """KV blocks the request at the head of the queue still needs to run; 0 with none queued."""
        ...

    def lightest_blocks(self) -> int:
        """KV blocks held by the decoding request with the fewest tokens, the one a migration
        moves; 0 with none decoding."""
        ...

    def cache_usage(self) -> float:
        """Fraction of KV blocks holding cached content (in use or free but reusable), 0..1."""
        ...

    def cached_prefix_tokens(self, spec: RequestSpec) -> int:
        """How many leading prompt tokens of `spec` this replica's prefix cache holds now."""
        ...


class LoadIndexed(Protocol):
    """Replicas that keep their least-outstanding one at hand (the simulator's ReplicaSet), so a
    router need not read every replica for each request: the cost of a request must not grow
    with the fleet."""

    def least_outstanding(self) -> ReplicaView:
        """The replica with the fewest outstanding requests (ties: lowest index)."""
        ...
