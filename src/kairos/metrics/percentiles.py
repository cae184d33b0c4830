"""Latency distributions: mean and the p50/p90/p99 percentiles that every report shows.

Percentiles use numpy's default 'linear' method (Hyndman & Fan type 7), the one
vLLM's benchmark reports. `weighted_percentiles` reproduces it bit for bit on a
sample given as distinct values with integer repeat counts, so inter-token
latencies recorded in bulk never have to be expanded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0)
STAT_KEYS: tuple[str, ...] = ("mean", "p50", "p90", "p99")


def empty_stats() -> dict[str, float]:
    """Stats of an empty sample: zeros rather than NaN, so that reports stay valid JSON."""
    return dict.fromkeys(STAT_KEYS, 0.0)


def stats_ms(values_s: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Mean and percentiles, in milliseconds, of a sample given in seconds."""
    sample = np.asarray(values_s, dtype=np.float64)
    if sample.size == 0:
        return empty_stats()
    points = np.percentile(sample, PERCENTILES)
    return _to_ms(float(np.mean(sample)), points)


def weighted_stats_ms(values_s: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """`stats_ms` of the sample where `values_s[i]` occurs `weights[i]` times.

    Percentiles are identical to those of the expanded sample; the mean equals its
    np.mean up to floating-point summation order.
    """
    total = int(weights.sum())
    if total == 0:
        return empty_stats()
    mean = float(np.dot(values_s, weights.astype(np.float64)) / total)
    return _to_ms(mean, weighted_percentiles(values_s, weights, PERCENTILES))


def weighted_percentiles(
    values: np.ndarray, weights: np.ndarray, percentiles: Sequence[float]
) -> np.ndarray:
    """np.percentile(np.repeat(values, weights), percentiles), without the repeat.

    Mirrors numpy's linear method step by step (virtual index (n-1)*q, floor and
    fraction, the two-sided lerp) so results match to the last bit; only the lookup
    of the k-th order statistic changes, to a binary search over cumulative weights.
    """
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    cumulative = np.cumsum(weights[order].astype(np.int64))
    count = int(cumulative[-1])
    quantiles = np.true_divide(np.asarray(percentiles, dtype=np.float64), 100)
    virtual = (count - 1) * quantiles
    lower_pos = np.floor(virtual)
    gamma = virtual - lower_pos
    upper_pos = lower_pos + 1
    past_end = virtual >= count - 1
    lower_pos[past_end] = count - 1
    upper_pos[past_end] = count - 1
    # Expanded position p holds the first sorted value whose cumulative weight exceeds p.
    lower = sorted_values[np.searchsorted(cumulative, lower_pos.astype(np.int64), side="right")]
    upper = sorted_values[np.searchsorted(cumulative, upper_pos.astype(np.int64), side="right")]
    return _lerp(lower, upper, gamma)


def _lerp(lower: np.ndarray, upper: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """numpy's quantile lerp: interpolate from the nearer end for better rounding."""
    span = upper - lower
    result: np.ndarray = np.where(gamma >= 0.5, upper - span * (1 - gamma), lower + span * gamma)
    return result


def _to_ms(mean_s: float, points_s: np.ndarray) -> dict[str, float]:
    stats = {"mean": mean_s * 1000.0}
    for key, point in zip(STAT_KEYS[1:], points_s, strict=True):
        stats[key] = float(point) * 1000.0
    return stats
