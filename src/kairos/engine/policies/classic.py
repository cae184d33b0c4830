"""vLLM's own policies: first come first served, and priority."""

from __future__ import annotations

from kairos.engine.policies.base import POLICIES, FifoQueue, RankedQueue
from kairos.engine.request import Request


@POLICIES.register("fcfs")
class FcfsQueue(FifoQueue):
    """First come, first served; the newest running request is preempted first (vLLM default)."""


@POLICIES.register("priority")
class PriorityQueue(RankedQueue):
    """Lowest `priority` value first, then earliest arrival; the worst-ranked running request is preempted."""

    def rank(self, req: Request) -> tuple[int, float, int]:
        return (req.priority, req.arrival_s, req.uid)

    def victim_rank(self, req: Request) -> tuple[int, float]:
        # vLLM ranks victims by (priority, arrival) only: among ties the first in running order.
        return (req.priority, req.arrival_s)
