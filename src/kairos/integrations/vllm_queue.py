"""vLLM's waiting-queue interface over a Kairos `QueuePolicy`: the half of the vLLM plug-in that needs no vLLM.

`PolicyWaitingQueue` answers vLLM's `RequestQueue` calls (add, pop, peek, prepend,
remove) with a Kairos policy's choices. Each vLLM request gets a shadow
`kairos.engine.request.Request` that the policy ranks; the shadow's output and
computed-token counts are copied from the vLLM request whenever the policy may
read them. Duck typing keeps vLLM out: `kairos.integrations.vllm` registers the
class as a `RequestQueue`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from kairos.engine.policies import POLICIES, QueuePolicy, RankedQueue, make_waiting_queue
from kairos.engine.policies.predicted import policy_predictor
from kairos.engine.request import Request
from kairos.errors import KairosError
from kairos.predict import OutputPredictor
from kairos.workload.spec import SLO, RequestSpec

# Where the plug-in's settings come from: the "kairos" key of vLLM's --additional-config, else this variable.
CONFIG_KEY = "kairos"
CONFIG_ENV = "KAIROS_VLLM_CONFIG"

# Policy flags the plug-in cannot honour inside vLLM's schedule(), with the reason an error gives.
_UNSUPPORTED = {
    "gates_admission": "refuses admissions the engine has room for",
    "caps_running": "caps the tokens of running requests",
}


class VllmRequest(Protocol):
    """The fields of vLLM's `vllm.v1.request.Request` that the adapter reads."""

    request_id: str
    arrival_time: float
    priority: int
    num_prompt_tokens: int
    max_tokens: int
    num_computed_tokens: int
    sampling_params: Any

    @property
    def num_output_tokens(self) -> int: ...


@dataclass(frozen=True, slots=True)
class PluginConfig:
    """The Kairos policy (and predictor) a vLLM engine runs, with their knobs."""

    policy: str = "fcfs"
    policy_options: dict[str, Any] = field(default_factory=dict)
    predictor: str | None = None
    predictor_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, additional_config: Any, environ: Mapping[str, str]) -> PluginConfig:
        """From `additional_config["kairos"]` (vLLM's --additional-config), else the JSON in $KAIROS_VLLM_CONFIG."""
        raw: Any = None
        if isinstance(additional_config, Mapping):
            raw = additional_config.get(CONFIG_KEY)
        if raw is None and environ.get(CONFIG_ENV):
            try:
                raw = json.loads(environ[CONFIG_ENV])
            except json.JSONDecodeError as e:
                raise KairosError(f"${CONFIG_ENV} is not JSON: {e}") from None
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise KairosError(f"the '{CONFIG_KEY}' plug-in config must be a JSON object, got {raw!r}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise KairosError(f"unknown key(s) {unknown} in the '{CONFIG_KEY}' plug-in config; known: {sorted(known)}")
        return cls(**raw)


def unsupported_reason(policy: str) -> str | None:
    """Why the plug-in cannot run the registered policy `policy` faithfully (None: it can)."""
    factory = POLICIES.get(policy)
    return next((why for flag, why in _UNSUPPORTED.items() if getattr(factory, flag, False)), None)


def build_queue(config: PluginConfig) -> PolicyWaitingQueue:
    """The waiting queue of `config`'s policy; a policy the plug-in cannot run faithfully is a one-line error."""
    why = unsupported_reason(config.policy)
    if why is not None:
        raise KairosError(f"scheduling policy '{POLICIES.canonical(config.policy)}' {why}, which the vLLM "
                          "plug-in cannot do; run it with kairos simulate or kairos serve")
    predictor = policy_predictor(config.policy, config.predictor, config.predictor_options)
    return PolicyWaitingQueue(make_waiting_queue(config.policy, config.policy_options, predictor), predictor)


def _number(extra: Mapping[str, Any], key: str) -> float | None:
    # A malformed value is ignored: one client's bad request must not stop the engine core.
    value = extra.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _spec_of(vreq: VllmRequest) -> RequestSpec:
    """A shadow's spec: lengths, arrival and priority from vLLM; request classes from the request's
    `vllm_xargs` (tenant, slo_class, deadline_s, ttft_ms, tpot_ms, e2e_ms), which vLLM has no fields for."""
    extra = getattr(getattr(vreq, "sampling_params", None), "extra_args", None) or {}
    targets = {k: _number(extra, k) for k in ("ttft_ms", "tpot_ms", "e2e_ms")}
    tenant, slo_class = extra.get("tenant"), extra.get("slo_class")
    return RequestSpec(
        request_id=vreq.request_id,
        arrival_s=vreq.arrival_time,
        prompt_len=vreq.num_prompt_tokens,
        # With ignore_eos, max_tokens is the true length: what the oracle predictor reads.
        output_len=vreq.max_tokens,
        priority=vreq.priority,
        tenant=None if tenant is None else str(tenant),
        slo_class=None if slo_class is None else str(slo_class),
        deadline_s=_number(extra, "deadline_s"),
        slo=SLO(**targets) if any(v is not None for v in targets.values()) else None,
    )


@dataclass(slots=True)
class _Tracked:
    """A live vLLM request, its shadow, and when vLLM last took it from the queue."""

    vllm: Any
    shadow: Request
    admitted: int = -1  # orders running requests as Kairos's scheduler keeps them: by admission


class PolicyWaitingQueue:
    """vLLM's `RequestQueue` over a Kairos policy, plus the hooks the scheduler subclass calls.

    Shadows live from a request's first enqueue until vLLM frees it (`finished`),
    so that running requests can be ranked for preemption too.
    """

    def __init__(self, policy: QueuePolicy, predictor: OutputPredictor | None = None) -> None:
        self.policy = policy
        self.predictor = predictor
        self._tracked: dict[str, _Tracked] = {}
        self._uids = itertools.count()
        self._admissions = itertools.count()
        # A policy that keeps vLLM's own victim (the newest running request) needs no reordering.
        self._picks_victims = type(policy).pick_victim is not QueuePolicy.pick_victim

    @property
    def counts_service(self) -> bool:
        """Whether the policy must see every computed token (`served`)."""
        return self.policy.counts_service

    def _track(self, vreq: VllmRequest) -> _Tracked:
        tracked = self._tracked.get(vreq.request_id)
        if tracked is None:
            spec = _spec_of(vreq)
            shadow = Request(spec, next(self._uids), spec.arrival_s)
            if self.predictor is not None:
                shadow.predicted_output = self.predictor.predict(spec)
            tracked = self._tracked[vreq.request_id] = _Tracked(vreq, shadow)
        return tracked

    def _synced(self, vreq: VllmRequest) -> Request:
        """The shadow of `vreq` with vLLM's current progress copied in."""
        shadow = self._track(vreq).shadow
        shadow.num_output = vreq.num_output_tokens
        shadow.num_computed = vreq.num_computed_tokens
        return shadow

    # ---- vLLM's RequestQueue -------------------------------------------------------------
    def add_request(self, request: VllmRequest) -> None:
        self.policy.add(self._synced(request))

    def prepend_request(self, request: VllmRequest) -> None:
        # vLLM prepends preempted requests and those its scan skipped: the policy's requeue.
        self.policy.requeue(self._synced(request))

    def prepend_requests(self, requests: Iterable[VllmRequest]) -> None:
        # One by one to the front, so a FIFO policy reverses them as vLLM's deque.extendleft does.
        for request in requests:
            self.prepend_request(request)

    def peek_request(self) -> Any:
        if not len(self.policy):
            raise IndexError("peek from an empty queue")
        return self._tracked[self.policy.peek().request_id].vllm

    def pop_request(self) -> Any:
        if not len(self.policy):
            raise IndexError("pop from an empty queue")
        tracked = self._tracked[self.policy.pop().request_id]
        tracked.admitted = next(self._admissions)
        return tracked.vllm

    def remove_request(self, request: VllmRequest) -> None:
        tracked = self._tracked.get(request.request_id)
        if tracked is None or not self.policy.remove(tracked.shadow):
            raise ValueError(f"request {request.request_id} is not in the waiting queue")

    def remove_requests(self, requests: Iterable[VllmRequest]) -> None:
        # vLLM removes finished requests from every queue at once: absent ones are no error.
        for request in requests:
            tracked = self._tracked.get(request.request_id)
            if tracked is not None:
                self.policy.remove(tracked.shadow)

    def __bool__(self) -> bool:
        return len(self.policy) > 0

    def __len__(self) -> int:
        return len(self.policy)

    def __iter__(self) -> Iterator[Any]:
        return (self._tracked[shadow.request_id].vllm for shadow in self.policy)

    # ---- hooks for the scheduler ---------------------------------------------------------
    def advance(self, now: float) -> None:
        """A step is about to be scheduled at wall time `now` (the clock of vLLM's arrival times)."""
        self.policy.advance(now)

    def preemption_order(self, running: list[Any]) -> list[Any]:
        """`running` reordered so that vLLM's FCFS preemption, which pops the last request, takes the
        policy's victim, and after each preemption the victim the policy picks among the rest.

        The policy picks among running requests in admission order (Kairos's running list), so its
        choice among equals does not depend on how this step reordered them.
        """
        if not self._picks_victims or len(running) < 2:
            return running
        tracked = sorted((self._track(r) for r in running), key=lambda t: t.admitted)
        shadows = [self._synced(t.vllm) for t in tracked]
        policy = self.policy
        if isinstance(policy, RankedQueue) and type(policy).pick_victim is RankedQueue.pick_victim:
            # max() takes the first of equals and a stable descending sort puts it first: the same
            # sequence of picks in O(n log n).
            victims_first = sorted(shadows, key=policy.victim_rank, reverse=True)
        else:
            victims_first, rest = [], shadows
            while rest:
                victim = policy.pick_victim(rest)
                victims_first.append(victim)
                rest = [s for s in rest if s is not victim]
        return [self._tracked[s.request_id].vllm for s in reversed(victims_first)]

    def served(self, request: VllmRequest, tokens: int) -> None:
        """`request` was scheduled `tokens` tokens (vLLM has already advanced its computed count)."""
        self.policy.served(self._synced(request), tokens)

    def finished(self, request: VllmRequest, completed: bool) -> None:
        """vLLM frees `request`: drop its shadow; the predictor learns the length of a completed one."""
        tracked = self._tracked.pop(request.request_id, None)
        if tracked is not None and completed and self.predictor is not None:
            self.predictor.observe(tracked.shadow.spec, request.num_output_tokens)
