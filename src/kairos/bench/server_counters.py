"""What a server's own Prometheus counters say about a benchmark: prefix-cache hits and preemptions.

A client cannot see either: vLLM (and `kairos serve`, which publishes the same
names) counts them in `/metrics`. Read before and after a run, their differences
are the run's, provided nothing else used the server meanwhile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COUNTER = re.compile(r"^vllm:(prefix_cache_hits|prefix_cache_queries|num_preemptions)(?:_total)?"
                      r"(?:\{[^}]*\})? (\S+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class ServerCounters:
    """Totals of the server's counters at one moment (summed over label sets, e.g. DP ranks)."""

    prefix_cache_hits: float
    prefix_cache_queries: float
    num_preemptions: float

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
        return cls(totals["prefix_cache_hits"], totals["prefix_cache_queries"], totals["num_preemptions"])


def run_counters(before: ServerCounters | None, after: ServerCounters | None) -> dict[str, float | int | None]:
    """The run's prefix-cache hit rate (hit tokens / queried tokens) and preemptions; None: not measured."""
    if before is None or after is None:
        return {"prefix_cache_hit_rate": None, "preemptions": None}
    queries = after.prefix_cache_queries - before.prefix_cache_queries
    hits = after.prefix_cache_hits - before.prefix_cache_hits
    return {"prefix_cache_hit_rate": hits / queries if queries > 0 else 0.0,
            "preemptions": int(after.num_preemptions - before.num_preemptions)}
