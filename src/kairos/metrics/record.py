"""Per-request timeline as recorded by an engine (simulated or real) or a load generator."""

from __future__ import annotations

from dataclasses import dataclass

from kairos.workload.spec import SLO, RequestSpec


@dataclass(slots=True)
class RequestRecord:
    """What happened to one request: when it arrived, was scheduled, streamed and finished.

    Times are seconds on the run's clock. `output_tokens` counts tokens actually
    generated, `cached_tokens` the prompt tokens served from the prefix cache when
    the request was first scheduled. A request with a `rejected_reason` never
    finished (dropped, too long for the KV cache, cut off at the end of the run).
    `tenant`, `slo_class`, `slo` and `deadline_s` (seconds after arrival) are the
    request's class, which goodput is judged and grouped by.
    """

    request_id: str
    arrival_s: float
    input_tokens: int
    output_tokens: int = 0
    first_scheduled_s: float | None = None
    first_token_s: float | None = None
    finish_s: float | None = None
    cached_tokens: int = 0
    preemptions: int = 0
    replica: int = 0
    rejected_reason: str | None = None
    slo: SLO | None = None
    tenant: str | None = None
    slo_class: str | None = None
    deadline_s: float | None = None

    @classmethod
    def for_spec(cls, spec: RequestSpec, arrival_s: float, replica: int = 0) -> RequestRecord:
        """An empty timeline for `spec`; `arrival_s` is explicit because closed-loop turns
        arrive relative to an earlier request's finish, not at `spec.arrival_s`."""
        return cls(
            request_id=spec.request_id,
            arrival_s=arrival_s,
            input_tokens=spec.prompt_len,
            replica=replica,
            slo=spec.slo,
            tenant=spec.tenant,
            slo_class=spec.slo_class,
            deadline_s=spec.deadline_s,
        )

    @property
    def finished(self) -> bool:
        return self.finish_s is not None and self.rejected_reason is None

    @property
    def ttft_s(self) -> float | None:
        """Time to first token, from arrival (vLLM benchmark definition)."""
        return None if self.first_token_s is None else self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> float | None:
        return None if self.finish_s is None else self.finish_s - self.arrival_s

    @property
    def queue_s(self) -> float | None:
        """Wait from arrival until the scheduler first gave the request a slot."""
        if self.first_scheduled_s is None:
            return None
        return self.first_scheduled_s - self.arrival_s

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first: (E2E - TTFT) / (output_tokens - 1)."""
        if self.output_tokens <= 1 or self.finish_s is None or self.first_token_s is None:
            return None
        return (self.finish_s - self.first_token_s) / (self.output_tokens - 1)
