"""Runtime state of one request inside an engine."""

from __future__ import annotations

import enum

from kairos.workload.spec import RequestSpec


class RequestStatus(enum.Enum):
    """Where a request is in its lifecycle."""

    WAITING = "waiting"
    # Holds blocks for its whole prompt while another engine's KV is pulled into them.
    WAITING_FOR_REMOTE_KV = "waiting_for_remote_kv"
    RUNNING = "running"
    PREEMPTED = "preempted"
    FINISHED = "finished"
    # Moved to another engine by a live migration; its blocks held here until copied.
    MIGRATED = "migrated"
    # Blocks held for a live migration into this engine, before its request arrives.
    RESERVED = "reserved"


class Request:
    """A request as the scheduler and KV cache see it.

    Tokens are the prompt followed by the tokens generated so far. `num_computed`
    counts tokens whose KV is in the cache; a step that brings it up to
    `num_tokens` samples one more token.

    Prefill/decode disaggregation, as vLLM's kv_transfer_params name it:
    `remote_prefill` (decode side) pulls the prompt's KV from the engine that
    prefilled it instead of computing it, once; `remote_decode` (prefill side)
    produces one token and keeps its blocks after finishing until the decode
    side has pulled them. They are engine arguments, not `RequestSpec` fields,
    because the same workload request reaches both engines.
    """

    __slots__ = (
        "spec", "request_id", "uid", "prompt_len", "max_output", "num_output",
        "num_computed", "status", "arrival_s", "first_scheduled_s", "first_token_s",
        "finish_s", "last_token_s", "cached_tokens", "preemptions", "token_ids",
        "block_hashes", "priority", "finish_reason", "replica", "shared_len",
        "remote_prefill", "remote_decode", "num_remote_tokens", "predicted_output",
    )

    def __init__(self, spec: RequestSpec, uid: int, arrival_s: float, *,
                 remote_prefill: bool = False, remote_decode: bool = False) -> None:
        self.spec = spec
        self.request_id = spec.request_id
        # A per-engine integer id: names this request's unique (unshared) content in hashes.
        self.uid = uid
        self.prompt_len = spec.prompt_len
        # A prefill-only request ends with its first token (vLLM's proxy sends it max_tokens=1).
        self.max_output = 1 if remote_decode else spec.output_len
        self.shared_len = spec.shared_len
        self.num_output = 0
        self.num_computed = 0
        self.status = RequestStatus.WAITING
        self.arrival_s = arrival_s
        # First admitted to run; a remote-KV request only once its KV landed (vLLM's SCHEDULED event).
        self.first_scheduled_s: float | None = None
        self.first_token_s: float | None = None
        self.finish_s: float | None = None
        self.last_token_s = 0.0
        # Prompt tokens served from this engine's prefix cache at the first lookup that
        # admitted it, to run or to load remote KV (-1: not yet).
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
        # Cleared when the load starts: one transfer per request, as vLLM's NixlConnector.
        self.remote_prefill = remote_prefill
        self.remote_decode = remote_decode
        # Prompt tokens whose KV a remote load brings or brought (0: none).
        self.num_remote_tokens = 0
        # Output tokens predicted when it arrived (None: the engine has no predictor).
        self.predicted_output: int | None = None

    @property
    def num_tokens(self) -> int:
        return self.prompt_len + self.num_output

    def __repr__(self) -> str:
        return (f"Request({self.request_id}, {self.status.value}, computed={self.num_computed}"
                f"/{self.num_tokens}, out={self.num_output}/{self.max_output})")
