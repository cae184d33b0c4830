"""What a server's own Prometheus counters say about a benchmark: prefix-cache hits and preemptions,
and, where it publishes them, the engine's own time per request in each phase.

A client cannot see these: vLLM (and `kairos serve`, which publishes the same
counter names) counts them in `/metrics`. Read before and after a run, their
differences are the run's, provided nothing else used the server meanwhile.
vLLM's per-request histograms are timed in its engine core: queue (arrival at
the engine to first scheduled), prefill (scheduled to first token) and decode
(first to last token); with the client's TTFT they tell the engine's share of
it from the API server's. `vllm:iteration_tokens_total`'s count is the engine's
steps whose outputs reached the API server (one per output message), not steps
that made no token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_PHASES = ("queue", "prefill", "decode")
_PHASE_SERIES = re.compile(r"^vllm:request_(queue|prefill|decode)_time_seconds_(sum|count)(?:\{[^}]*\})? (\S+)$",
                           re.MULTILINE)
_STEPS = re.compile(r"^vllm:iteration_tokens_total_count(?:\{[^}]*\})? (\S+)$", re.MULTILINE)
_COUNTER = re.compile(r"^vllm:(prefix_cache_hits|prefix_cache_queries|num_preemptions)(?:_total)?"
                      r"(?:\{[^}]*\})? (\S+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class ServerCounters:
    """Totals of the server's counters at one moment (summed over label sets, e.g. DP ranks)."""

    prefix_cache_hits: float
    prefix_cache_queries: float
    num_preemptions: float
    # "queue_sum", "queue_count", ... of the per-request phase histograms, and "steps"; {}: not published.
    engine: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, metrics_text: str | None) -> ServerCounters | None:
        """The counters on a /metrics page; None where the page is missing or lacks them."""
        if metrics_text is None:
            return None
        totals: dict[str, float] = {}
        for name, value in _COUNTER.findall(metrics_text):
            totals[name] = totals.get(name, 0.0) + float(value)
        if len(totals) < 3:
            return None
        steps = _STEPS.findall(metrics_text)
        engine: dict[str, float] = {}
        if len({match[:2] for match in _PHASE_SERIES.findall(metrics_text)}) == 2 * len(_PHASES) and steps:
            engine = {**phase_totals(metrics_text), "steps": sum(float(value) for value in steps)}
        return cls(totals["prefix_cache_hits"], totals["prefix_cache_queries"], totals["num_preemptions"], engine)


def phase_totals(metrics_text: str) -> dict[str, float]:
    """Sums and counts of vLLM's per-request queue, prefill and decode time histograms
    (`queue_sum`, `queue_count`, ...), over all label sets; 0 for those missing."""
    totals = {f"{phase}_{series}": 0.0 for phase in _PHASES for series in ("sum", "count")}
    for phase, series, value in _PHASE_SERIES.findall(metrics_text):
        totals[f"{phase}_{series}"] += float(value)
    return totals


def run_counters(before: ServerCounters | None, after: ServerCounters | None) -> dict[str, float | int | None]:
    """The run's prefix-cache hit rate (hit tokens / queried tokens) and preemptions; None: not measured."""
    if before is None or after is None:
        return {"prefix_cache_hit_rate": None, "preemptions": None}
    queries = after.prefix_cache_queries - before.prefix_cache_queries
    hits = after.prefix_cache_hits - before.prefix_cache_hits
    return {"prefix_cache_hit_rate": hits / queries if queries > 0 else 0.0,
            "preemptions": int(after.num_preemptions - before.num_preemptions)}


def engine_phases(before: ServerCounters | None, after: ServerCounters | None) -> dict[str, float] | None:
    """The engine's mean queue, prefill and decode time per request over the run (ms), with the
    requests each mean covers and the engine's steps; None where the server does not publish them."""
    if before is None or after is None or not before.engine or not after.engine:
        return None
    delta = {key: after.engine[key] - before.engine[key] for key in after.engine}
    phases: dict[str, float] = {}
    for phase in _PHASES:
        count = delta[f"{phase}_count"]
        if count <= 0:
            return None
        phases[f"{phase}_ms"] = 1e3 * delta[f"{phase}_sum"] / count
    phases["requests"] = int(delta["prefill_count"])
    phases["steps"] = int(delta["steps"])
    return phases
