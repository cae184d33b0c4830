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
    rounded: dict[str, Any] = round_floats(summary)
    return rounded


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
    """
    if not record.finished:
        return False
    slo = effective_slo(record, defaults)
    return (
        _within(record.ttft_s, slo.ttft_ms)
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


def _duration_s(records: Sequence[RequestRecord], completed: Sequence[RequestRecord]) -> float:
    if not completed:
        return 0.0
    first_arrival = min(r.arrival_s for r in records)
    last_finish = max(r.finish_s for r in completed if r.finish_s is not None)
    return max(last_finish - first_arrival, 0.0)
