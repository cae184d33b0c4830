"""What a plan must meet: latency targets at a percentile, judged on a run's requests."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kairos.errors import KairosError
from kairos.metrics import RequestRecord

_METRICS = ("ttft", "tpot", "e2e")


@dataclass(frozen=True, slots=True)
class SloTarget:
    """TTFT, TPOT and E2E targets (ms, None: none) that the `percentile`-th request must meet.

    A run meets it when every request completed and, for each target given, that
    percentile of the metric over the requests is within it (TPOT over requests with
    more than one output token).
    """

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None
    percentile: float = 90.0

    def __post_init__(self) -> None:
        if self.ttft_ms is None and self.tpot_ms is None and self.e2e_ms is None:
            raise KairosError("a plan needs an SLO: set slo.ttft_ms, slo.tpot_ms or slo.e2e_ms"
                              " (or --ttft, --tpot, --e2e)")
        if not 0 < self.percentile <= 100:
            raise KairosError(f"the SLO percentile must be in (0, 100], got {self.percentile:g}")

    def targets(self) -> dict[str, float]:
        return {m: t for m, t in zip(_METRICS, (self.ttft_ms, self.tpot_ms, self.e2e_ms)) if t is not None}

    def describe(self) -> str:
        given = ", ".join(f"{m.upper()} {t:g} ms" for m, t in self.targets().items())
        return f"p{self.percentile:g} {given}"

    def observed_ms(self, records: Sequence[RequestRecord]) -> dict[str, float | None]:
        """The percentile of each targeted metric, in ms (None: no request has it)."""
        observed: dict[str, float | None] = {}
        for metric in self.targets():
            values = [v for v in (_value_s(r, metric) for r in records) if v is not None]
            observed[metric] = float(np.percentile(values, self.percentile)) * 1e3 if values else None
        return observed

    def meets(self, records: Sequence[RequestRecord], observed: dict[str, float | None] | None = None) -> bool:
        """Whether `records` meet it; `observed`: their `observed_ms`, when already computed."""
        if not records or not all(r.finished for r in records):
            return False
        observed = self.observed_ms(records) if observed is None else observed
        return all(observed[m] is None or observed[m] <= t for m, t in self.targets().items())

    def fail_fast(self) -> Callable[[RequestRecord, int], bool]:
        """A run's `stop_when`: True once so many requests missed a target (or one was rejected) that
        the percentile cannot be met whatever the rest do."""
        targets = self.targets()
        missed = dict.fromkeys(targets, 0)

        def stop(record: RequestRecord, num_requests: int) -> bool:
            # More misses than this and the percentile is over the target, however it interpolates.
            allowed = math.floor((100 - self.percentile) * num_requests / 100) + 1
            if not record.finished:
                return True  # every request must complete
            for metric, target in targets.items():
                value = _value_s(record, metric)
                if value is not None and value * 1e3 > target:
                    missed[metric] += 1
                    if missed[metric] > allowed:
                        return True
            return False

        return stop


def _value_s(record: RequestRecord, metric: str) -> float | None:
    if metric == "ttft":
        return record.ttft_s
    if metric == "e2e":
        return record.e2e_s
    return record.tpot_s if record.output_tokens > 1 else None
