"""Fair share over tenants: the virtual token counter (VTC)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from kairos.engine.policies.base import POLICIES, QueuePolicy
from kairos.engine.request import Request


def tenant_of(req: Request) -> str:
    """The tenant a request is accounted to ("" for requests that name none)."""
    return req.spec.tenant or ""


@POLICIES.register("vtc")
@dataclass(eq=False)
class VirtualTokenCounter(QueuePolicy):
    """Fair share over tenants (VTC, Sheng et al., OSDI 2024): the least-served backlogged tenant goes next.

    Each tenant's counter adds `input_weight` per prompt token and
    `output_weight` per generated token its requests compute. The waiting
    request admitted next is the oldest of the tenant with the smallest counter;
    a tenant that had nothing waiting is lifted to the smallest counter of those
    that had, so idling earns it no credit to flood with later. The running
    request preempted first is the newest of the most-served tenant.
    """

    input_weight: float = 1.0
    output_weight: float = 2.0
    counters: dict[str, float] = field(init=False, default_factory=dict)
    _queues: dict[str, deque[Request]] = field(init=False, default_factory=dict, repr=False)
    _size: int = field(init=False, default=0, repr=False)
    _newly_backlogged: set[str] = field(init=False, default_factory=set, repr=False)
    time_varying = True  # counters move as tokens are served: the next tenant changes
    counts_service = True

    def __post_init__(self) -> None:
        if self.input_weight < 0 or self.output_weight < 0:
            raise ValueError("weights must be >= 0")

    def add(self, req: Request) -> None:
        tenant = tenant_of(req)
        queue = self._queues.get(tenant)
        if not queue:
            # Lifted when the next step is scheduled, against the counters then: the tokens of
            # steps still being accounted for must not decide the lift.
            self._newly_backlogged.add(tenant)
            self.counters.setdefault(tenant, 0.0)
            queue = self._queues[tenant] = deque()
        queue.append(req)
        self._size += 1

    def advance(self, now: float) -> None:
        if not self._newly_backlogged:
            return
        new = self._newly_backlogged
        waiting = [self.counters[t] for t, q in self._queues.items() if q and t not in new]
        if waiting:
            lift = min(waiting)
            for tenant in new:
                self.counters[tenant] = max(self.counters[tenant], lift)
        new.clear()

    def requeue(self, req: Request) -> None:
        self.add(req)
        queue = self._queues[tenant_of(req)]
        queue.rotate(1)  # from the back to the front: it was admitted before the others

    def _next_queue(self) -> deque[Request]:
        # Ties go to the tenant whose oldest request arrived first; names settle the rest.
        return min((q for q in self._queues.values() if q),
                   key=lambda q: (self.counters[tenant_of(q[0])], q[0].arrival_s, tenant_of(q[0])))

    def peek(self) -> Request:
        return self._next_queue()[0]

    def pop(self) -> Request:
        self._size -= 1
        return self._next_queue().popleft()

    def remove(self, req: Request) -> bool:
        queue = self._queues.get(tenant_of(req))
        if queue is None or req not in queue:
            return False
        queue.remove(req)
        self._size -= 1
        return True

    def served(self, req: Request, tokens: int) -> None:
        # The tokens just computed end at num_computed: those before prompt_len were prompt tokens.
        start = req.num_computed - tokens
        prompt = min(max(req.prompt_len - start, 0), tokens)
        tenant = tenant_of(req)
        cost = self.input_weight * prompt + self.output_weight * (tokens - prompt)
        self.counters[tenant] = self.counters.get(tenant, 0.0) + cost

    def pick_victim(self, running: list[Request]) -> Request:
        top = max(self.counters.get(tenant_of(r), 0.0) for r in running)
        return next(r for r in reversed(running) if self.counters.get(tenant_of(r), 0.0) == top)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Request]:
        for queue in self._queues.values():
            yield from queue
