"""The report's `summary` block: counts, throughput, latency distributions, goodput."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kairos.metrics.itl import ItlCollector
from kairos.metrics.percentiles import stats_ms
from kairos.metrics.record import RequestRecord
from kairos.workload.spec import SLO

# Summary floats are rounded to this many decimals (microseconds for seconds,
# nanoseconds for milliseconds) so that reports read cleanly and compare stably.
DECIMALS = 6
# The by_class / by_tenant key of requests without a class or a tenant.
NO_GROUP = "(none)"


def summarize(
    records: Sequence[RequestRecord],
    itl: ItlCollector,
    slo_defaults: SLO | None,
    prefix_cache_hit_rate: float = 0.0,
) -> dict[str, Any]:
    """Summarize a run (DESIGN.md report schema).

    Latencies cover completed requests only; `num_requests` and the SLO attainment
    denominator include rejected ones. `duration_s` runs from the first arrival to
    the last finish and is the denominator of every rate. `prefix_cache_hit_rate`
    (hit tokens / queried tokens) comes from the engines' KV cache statistics,
    which also see lookups of preempted requests that records do not.

    When any request has a class or a tenant, `by_class` and `by_tenant` break
    the requests down by it (`group_summary`; "(none)" gathers those without).
    """
    completed = [r for r in records if r.finished]
    duration_s = _duration_s(records, completed)
    good = sum(1 for r in completed if meets_slo(r, slo_defaults))

    def per_second(amount: float) -> float:
        return amount / duration_s if duration_s > 0 else 0.0

    summary = {
        "num_requests": len(records),
        "completed": len(completed),
        "rejected": sum(1 for r in records if r.rejected_reason is not None),
        "duration_s": duration_s,
        "throughput": {
            "requests_per_s": per_second(len(completed)),
            "input_tokens_per_s": per_second(sum(r.input_tokens for r in completed)),
            "output_tokens_per_s": per_second(sum(r.output_tokens for r in completed)),
        },
        "ttft_ms": stats_ms([r.ttft_s for r in completed if r.ttft_s is not None]),
        "tpot_ms": stats_ms([r.tpot_s for r in completed if r.tpot_s is not None]),
        "itl_ms": itl.summary(),
        "e2e_ms": stats_ms([r.e2e_s for r in completed if r.e2e_s is not None]),
        "queue_ms": stats_ms([r.queue_s for r in completed if r.queue_s is not None]),
        "goodput": {
            "requests_per_s": per_second(good),
            "slo_attainment": good / len(records) if records else 0.0,
        },
        "preemptions": sum(r.preemptions for r in records),
        "prefix_cache_hit_rate": prefix_cache_hit_rate,
    }
    for key, attribute in (("by_class", "slo_class"), ("by_tenant", "tenant")):
        if any(getattr(r, attribute) is not None for r in records):
            summary[key] = {
                name: group_summary(group, duration_s, slo_defaults)
                for name, group in _groups(records, attribute).items()
            }
    rounded: dict[str, Any] = round_floats(summary)
    return rounded


def group_summary(
    records: Sequence[RequestRecord], duration_s: float, slo_defaults: SLO | None
) -> dict[str, Any]:
    """One class's or tenant's share of a run: counts, tokens served, goodput, latencies.

    Rates use the whole run's `duration_s`, so the groups' rates add up to the
    run's. `input_tokens` and `output_tokens` are the tokens served to completed
    requests (what a fair-share policy divides); goodput counts the requests that
    met every target (`meets_slo`) and their output tokens.
    """
    completed = [r for r in records if r.finished]
    good = [r for r in completed if meets_slo(r, slo_defaults)]

    def per_second(amount: float) -> float:
        return amount / duration_s if duration_s > 0 else 0.0

    return {
        "requests": len(records),
        "completed": len(completed),
        "input_tokens": sum(r.input_tokens for r in completed),
        "output_tokens": sum(r.output_tokens for r in completed),
        "goodput": {
            "requests_per_s": per_second(len(good)),
            "output_tokens_per_s": per_second(sum(r.output_tokens for r in good)),
            "slo_attainment": len(good) / len(records) if records else 0.0,
        },
        "ttft_ms": stats_ms([r.ttft_s for r in completed if r.ttft_s is not None]),
        "tpot_ms": stats_ms([r.tpot_s for r in completed if r.tpot_s is not None]),
        "e2e_ms": stats_ms([r.e2e_s for r in completed if r.e2e_s is not None]),
    }


def effective_slo(record: RequestRecord, defaults: SLO | None) -> SLO:
    """The request's own targets, falling back field by field to the scenario's."""
    own = record.slo or SLO()
    base = defaults or SLO()
    return SLO(
        ttft_ms=own.ttft_ms if own.ttft_ms is not None else base.ttft_ms,
        tpot_ms=own.tpot_ms if own.tpot_ms is not None else base.tpot_ms,
        e2e_ms=own.e2e_ms if own.e2e_ms is not None else base.e2e_ms,
    )


def meets_slo(record: RequestRecord, defaults: SLO | None) -> bool:
    """Whether a request counts toward goodput: completed and within every target given.

    TPOT is undefined for a single output token, so that target is skipped there.
    A request's `deadline_s` is one more target on its end-to-end latency.
    """
    if not record.finished:
        return False
    slo = effective_slo(record, defaults)
    deadline_ms = None if record.deadline_s is None else record.deadline_s * 1000.0
    return (
        _within(record.ttft_s, slo.ttft_ms)
        and _within(record.e2e_s, deadline_ms)
        and _within(record.e2e_s, slo.e2e_ms)
        and (record.output_tokens <= 1 or _within(record.tpot_s, slo.tpot_ms))
    )


def round_floats(value: Any) -> Any:
    """Round every float in a nested dict/list to DECIMALS places (and turn -0.0 into 0.0)."""
    if isinstance(value, float):
        return round(value, DECIMALS) + 0.0
    if isinstance(value, dict):
        return {key: round_floats(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [round_floats(item) for item in value]
    return value


def _within(latency_s: float | None, target_ms: float | None) -> bool:
    if target_ms is None:
        return True
    return latency_s is not None and latency_s * 1000.0 <= target_ms


def _groups(records: Sequence[RequestRecord], attribute: str) -> dict[str, list[RequestRecord]]:
    groups: dict[str, list[RequestRecord]] = {}
    for record in records:
        groups.setdefault(getattr(record, attribute) or NO_GROUP, []).append(record)
    return groups


def _duration_s(records: Sequence[RequestRecord], completed: Sequence[RequestRecord]) -> float:
    if not completed:
        return 0.0
    first_arrival = min(r.arrival_s for r in records)
    last_finish = max(r.finish_s for r in completed if r.finish_s is not None)
    return max(last_finish - first_arrival, 0.0)
