"""Per-replica time series of a run: state sampled at fixed instants, and timeseries.csv."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

TIMESERIES_FILE = "timeseries.csv"
TIMESERIES_COLUMNS: tuple[str, ...] = (
    "t_s", "replica", "running", "waiting", "kv_usage", "arrivals", "completions", "output_tokens",
)


@dataclass(frozen=True, slots=True)
class TimeSeries:
    """Each replica's state at `t_s[i] = i * interval_s`, seen just before the events of that instant.

    Arrays are (samples, replicas). `running`, `waiting` and `kv_usage` (blocks in use / blocks)
    are instantaneous; `arrivals` (requests routed to the replica), `completions` and
    `output_tokens` (tokens its engine sampled) are cumulative: rates are their differences.
    """

    interval_s: float
    t_s: np.ndarray
    running: np.ndarray
    waiting: np.ndarray
    kv_usage: np.ndarray
    arrivals: np.ndarray
    completions: np.ndarray
    output_tokens: np.ndarray

    @property
    def num_replicas(self) -> int:
        return self.running.shape[1]

    def rate(self, cumulative: np.ndarray, window: int) -> np.ndarray:
        """Per-second rate of a cumulative series over the `window` intervals ending at each sample;
        the run starts at 0, so the first window's rates ramp up rather than spike."""
        index = np.arange(len(cumulative))
        return (cumulative - cumulative[np.maximum(index - window, 0)]) / (window * self.interval_s)


def write_timeseries(out_dir: str | Path, series: TimeSeries) -> Path:
    """Write timeseries.csv under `out_dir` (created): one row per sample and replica, fixed precision."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / TIMESERIES_FILE
    lines = [",".join(TIMESERIES_COLUMNS)]
    for i, t in enumerate(series.t_s):
        for r in range(series.num_replicas):
            lines.append(f"{t:.6f},{r},{series.running[i, r]},{series.waiting[i, r]},{series.kv_usage[i, r]:.6f},"
                         f"{series.arrivals[i, r]},{series.completions[i, r]},{series.output_tokens[i, r]}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
