"""Runtime state of one request inside an engine."""

from __future__ import annotations

import enum

from kairos.workload.spec import RequestSpec


class RequestStatus(enum.Enum):
    """Where a request is in its lifecycle."""

    WAITING = "waiting"
    RUNNING = "running"
    PREEMPTED = "preempted"
    FINISHED = "finished"


class Request:
    """A request as the scheduler and KV cache see it.

    Tokens are the prompt followed by the tokens generated so far. `num_computed`
    counts tokens whose KV is in the cache; a step that brings it up to
    `num_tokens` samples one more token.
    """

    __slots__ = (
        "spec", "request_id", "uid", "prompt_len", "max_output", "num_output",
        "num_computed", "status", "arrival_s", "first_scheduled_s", "first_token_s",
        "finish_s", "last_token_s", "cached_tokens", "preemptions", "token_ids",
        "block_hashes", "priority", "finish_reason", "replica", "shared_len",
    )

    def __init__(self, spec: RequestSpec, uid: int, arrival_s: float) -> None:
        self.spec = spec
        self.request_id = spec.request_id
        # A per-engine integer id: names this request's unique (unshared) content in hashes.
        self.uid = uid
        self.prompt_len = spec.prompt_len
        self.max_output = spec.output_len
        self.shared_len = spec.shared_len
        self.num_output = 0
        self.num_computed = 0
        self.status = RequestStatus.WAITING
        self.arrival_s = arrival_s
        self.first_scheduled_s: float | None = None
        self.first_token_s: float | None = None
        self.finish_s: float | None = None
        self.last_token_s = 0.0
        # Prompt tokens served from the prefix cache when first scheduled (-1: not yet).
        self.cached_tokens = -1
        self.preemptions = 0
        self.token_ids: list[int] | None = (
            list(spec.prompt_token_ids) if spec.prompt_token_ids is not None else None
        )
        # Chained hashes of full blocks, extended lazily by the KV cache's hasher.
        self.block_hashes: list[int] = []
        self.priority = spec.priority
        self.finish_reason: str | None = None
        self.replica = 0

    @property
    def num_tokens(self) -> int:
        return self.prompt_len + self.num_output

    def __repr__(self) -> str:
        return (f"Request({self.request_id}, {self.status.value}, computed={self.num_computed}"
                f"/{self.num_tokens}, out={self.num_output}/{self.max_output})")
