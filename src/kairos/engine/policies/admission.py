"""Admission control on projected KV: Past-Future."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kairos.engine.policies.base import POLICIES, FifoQueue, StepContext
from kairos.engine.request import Request
from kairos.predict import OutputPredictor


@POLICIES.register("past_future")
@dataclass(eq=False)
class PastFutureAdmission(FifoQueue):
    """FCFS, admitting a request only if the batch's projected peak KV with it fits (Past-Future).

    Each running request is projected to its predicted final length (the predictor
    conditions on the tokens generated so far, so a prediction proven short is
    revised), and the batch's KV is projected step by step as requests finish: the
    peak of that curve, plus the blocks others hold (loading or held for a
    transfer), must fit in the cache less `headroom`. Greedy admission (fcfs)
    admits while blocks are free now and preempts later; reserving every request's
    limit (this policy with the `constant` predictor) admits too few.
    """

    predictor: OutputPredictor
    headroom: float = 0.0
    _final: dict[int, int] = field(init=False, default_factory=dict, repr=False)
    needs_predictor = True
    gates_admission = True
    # The projection moves as the batch decodes (a prediction outgrown is revised), so a head
    # blocked on KV may be admitted later without any request added or removed.
    time_varying = True

    def __post_init__(self) -> None:
        FifoQueue.__init__(self)
        if not 0 <= self.headroom < 1:
            raise ValueError(f"headroom must be in [0, 1), got {self.headroom}")

    def _final_tokens(self, req: Request) -> int:
        """Predicted prompt + output tokens at the end, re-predicted once the request outgrows it."""
        final = self._final.get(req.uid)
        if final is None or final <= req.num_tokens:
            final = req.prompt_len + self.predictor.predict(req.spec, req.num_output)
            self._final[req.uid] = final
        return final

    def admit(self, req: Request, num_new: int, ctx: StepContext) -> int:
        running = ctx.running
        if len(self._final) > 4 * (len(running) + 16):
            live = {r.uid for r in running}
            self._final = {uid: f for uid, f in self._final.items() if uid in live}
        batch = [*running, req]
        current = np.fromiter((r.num_tokens for r in batch), np.int64, len(batch))
        left = np.fromiter((self._final_tokens(r) for r in batch), np.int64, len(batch)) - current
        # Walk the finishes from the latest: when the k-th latest finishes (after d_k more steps), the
        # k requests finishing then or later hold their current tokens plus d_k each.
        order = np.argsort(-left, kind="stable")
        d = left[order]
        held = np.cumsum(current[order]) + np.arange(1, len(batch) + 1) * d
        # A request's last block is half empty on average.
        peak_blocks = float(np.max(held / ctx.kv.block_size + np.arange(1, len(batch) + 1) / 2))
        kv = ctx.kv
        # Blocks in use but not by the running batch (loading or held for a transfer); shared
        # prefix blocks count once in use and once per holder in the projection.
        others = kv.num_used_blocks - sum(len(kv.block_table(r)) for r in running)
        return num_new if peak_blocks + max(others, 0) <= kv.num_blocks * (1 - self.headroom) else 0
