"""Hybrid serving: a best-effort class fills the steps the interactive class leaves room in (HyGen)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from kairos.engine.policies.base import POLICIES, SplitQueue, StepContext
from kairos.engine.request import Request


@POLICIES.register("filler")
@dataclass(eq=False)
class Filler(SplitQueue):
    """Best-effort requests fill each step up to batch_tokens, behind the interactive ones (HyGen).

    Interactive requests go first; best-effort ones (`slo_class` == `best_effort`)
    fill each step up to `batch_tokens` tokens: HyGen's latency-budgeted
    co-location of online and offline requests.

    `batch_tokens` stands for the interactive TPOT target: the step size whose step
    time still meets it (read it off `kairos simulate --explain` or a profile). A
    best-effort prompt is admitted, and a running one's next prefill chunk given
    tokens, only while the step holds fewer; best-effort decodes always run (they
    hold KV), and best-effort requests are preempted before interactive ones.
    Interactive requests get vLLM's scheduling unchanged.
    """

    best_effort: str = "batch"
    batch_tokens: int = 512
    _interactive: deque[Request] = field(init=False, default_factory=deque, repr=False)
    _filler: deque[Request] = field(init=False, default_factory=deque, repr=False)
    gates_admission = True
    caps_running = True

    def __post_init__(self) -> None:
        if self.batch_tokens < 1:
            raise ValueError(f"batch_tokens must be >= 1, got {self.batch_tokens}")

    def is_best_effort(self, req: Request) -> bool:
        return req.spec.slo_class == self.best_effort

    def queues(self) -> tuple[deque[Request], deque[Request]]:
        return self._interactive, self._filler

    def queue_of(self, req: Request) -> deque[Request]:
        return self._filler if self.is_best_effort(req) else self._interactive

    def head_queue(self) -> deque[Request]:
        return self._interactive if self._interactive else self._filler

    def _room(self, req: Request, num_new: int, ctx: StepContext) -> int:
        if not self.is_best_effort(req):
            return num_new
        return max(0, min(num_new, self.batch_tokens - ctx.scheduled_tokens))

    def admit(self, req: Request, num_new: int, ctx: StepContext) -> int:
        return self._room(req, num_new, ctx)

    def cap_running(self, req: Request, num_new: int, ctx: StepContext) -> int:
        if req.num_output > 0 and req.num_computed == req.num_tokens - 1:
            return num_new  # a decode
        return self._room(req, num_new, ctx)

    def pick_victim(self, running: list[Request]) -> Request:
        return next((r for r in reversed(running) if self.is_best_effort(r)), running[-1])
