"""Inter-token latencies, collected in bulk and stored as weighted distinct values."""

from __future__ import annotations

import numpy as np

from kairos.metrics.percentiles import weighted_stats_ms

# Pending values are merged into the sorted (value, weight) table once this many
# accumulate: step gaps repeat a lot (same batch shape, same predicted time), so
# merging keeps memory proportional to distinct gaps, not to tokens.
_MERGE_AT = 1 << 20


class ItlCollector:
    """Every gap between consecutive tokens of every request, in seconds.

    A simulator that advances k decode steps at once for n requests reports the k
    step gaps once with count n (`add_repeated`); nothing is ever expanded to one
    entry per token. `summary()` gives mean/p50/p90/p99 in ms, equal to numpy's
    on the expanded sample, and zeros (with `count == 0`) when nothing was added.
    """

    __slots__ = ("_count", "_pending", "_pending_size", "_singles", "_values", "_weights")

    def __init__(self) -> None:
        self._values = np.empty(0, dtype=np.float64)  # sorted, distinct
        self._weights = np.empty(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, int]] = []
        self._pending_size = 0
        self._singles: list[float] = []
        self._count = 0

    @property
    def count(self) -> int:
        """Number of gaps recorded (expanded sample size)."""
        return self._count

    def add(self, value: float) -> None:
        self._singles.append(float(value))
        self._count += 1
        if len(self._singles) >= _MERGE_AT:
            self._merge()

    def add_repeated(self, values: np.ndarray, count: int) -> None:
        """Record each of `values` `count` times (`count` requests shared these gaps)."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        # A copy: the simulator may reuse its step-duration buffer.
        gaps = np.array(values, dtype=np.float64).ravel()
        if count == 0 or gaps.size == 0:
            return
        self._pending.append((gaps, count))
        self._pending_size += gaps.size
        self._count += gaps.size * count
        if self._pending_size >= _MERGE_AT:
            self._merge()

    def summary(self) -> dict[str, float]:
        """{"mean","p50","p90","p99"} in milliseconds."""
        self._merge()
        return weighted_stats_ms(self._values, self._weights)

    def _merge(self) -> None:
        if not self._pending and not self._singles:
            return
        value_parts = [self._values, np.asarray(self._singles, dtype=np.float64)]
        weight_parts = [self._weights, np.ones(len(self._singles), dtype=np.int64)]
        for gaps, count in self._pending:
            value_parts.append(gaps)
            weight_parts.append(np.full(gaps.size, count, dtype=np.int64))
        distinct, slot = np.unique(np.concatenate(value_parts), return_inverse=True)
        weights = np.zeros(distinct.size, dtype=np.int64)
        np.add.at(weights, slot, np.concatenate(weight_parts))
        self._values, self._weights = distinct, weights
        self._pending.clear()
        self._pending_size = 0
        self._singles.clear()
