"""Length-aware policies: shortest (remaining) job first on predicted output lengths, and LAPS."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from kairos.engine.policies.base import POLICIES, RankedQueue, SplitQueue
from kairos.engine.request import Request
from kairos.predict import OutputPredictor


@POLICIES.register("sjf")
@dataclass(eq=False)
class ShortestJobFirst(RankedQueue):
    """Shortest predicted output first (DriftSched's SJF); the longest predicted one is preempted.

    Ranks by the prediction made when the request arrived (`Request.predicted_output`),
    ties by arrival. A long request can wait as long as shorter ones keep coming.
    """

    predictor: OutputPredictor
    needs_predictor = True

    def __post_init__(self) -> None:
        RankedQueue.__init__(self)

    def rank(self, req: Request) -> tuple[int, float, int]:
        return (req.predicted_output or 0, req.arrival_s, req.uid)


@POLICIES.register("srpt")
@dataclass(eq=False)
class ShortestRemainingFirst(RankedQueue):
    """Shortest predicted remaining output first (SRPT); the one with the most left is preempted.

    A preempted request ranks by what it still has to generate, re-predicted given
    the tokens it produced (a predictor that learns revises a prediction proven short).
    """

    predictor: OutputPredictor
    needs_predictor = True

    def __post_init__(self) -> None:
        RankedQueue.__init__(self)

    def _remaining(self, req: Request) -> int:
        if req.num_output == 0 and req.predicted_output is not None:
            return req.predicted_output
        return self.predictor.predict(req.spec, req.num_output) - req.num_output

    def rank(self, req: Request) -> tuple[int, float, int]:
        return (self._remaining(req), req.arrival_s, req.uid)


@POLICIES.register("laps")
@dataclass(eq=False)
class LengthAwarePrefill(SplitQueue):
    """Short prompts first, queued apart from long ones (LAPS's dual prefill queues on one engine).

    A prompt is short when its tokens not covered by shared spans (a multi-turn
    follow-up's new input; the whole prompt otherwise) number at most
    `short_tokens`. Short prompts go first, so they do not wait behind long
    prefills (head-of-line blocking); a long prompt that has waited `max_wait_s`
    goes before them, so long ones are not starved. LAPS's batching window and
    CUDA-graph buckets for short prefills are not modelled: step times here have
    no graph buckets for prefill.
    """

    short_tokens: int = 256
    max_wait_s: float = 2.0
    _short: deque[Request] = field(init=False, repr=False)
    _long: deque[Request] = field(init=False, repr=False)
    _now: float = field(init=False, default=0.0, repr=False)
    time_varying = True  # a long prompt's wait reaching max_wait_s reorders the queue

    def __post_init__(self) -> None:
        if self.short_tokens < 1 or self.max_wait_s <= 0:
            raise ValueError("short_tokens must be >= 1 and max_wait_s > 0")
        self._short, self._long = deque(), deque()

    def queues(self) -> tuple[deque[Request], deque[Request]]:
        return self._short, self._long

    def queue_of(self, req: Request) -> deque[Request]:
        new_tokens = req.prompt_len - min(req.shared_len, req.prompt_len)
        return self._short if new_tokens <= self.short_tokens else self._long

    def head_queue(self) -> deque[Request]:
        long, short = self._long, self._short
        if long and (not short or self._now - long[0].arrival_s >= self.max_wait_s):
            return long
        return short

    def advance(self, now: float) -> None:
        self._now = now
