"""Open-loop arrival processes: when requests (or sessions) arrive."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from kairos.errors import unknown_name_error

ArrivalProcess = Literal["poisson", "gamma", "constant"]
ARRIVAL_PROCESSES: tuple[str, ...] = get_args(ArrivalProcess)


def arrival_times(
    process: str, n: int, rate: float, cv: float, rng: np.random.Generator
) -> np.ndarray:
    """`n` arrival times in seconds, the first at 0, with mean gap 1 / `rate`.

    - poisson: exponential gaps (memoryless; the usual open-loop model).
    - gamma: gamma gaps with coefficient of variation `cv`; cv > 1 is burstier
      than Poisson, cv < 1 smoother, cv = 1 is Poisson in distribution.
    - constant: every gap exactly 1 / rate.
    A rate of infinity puts every arrival at 0 (an offline batch).
    """
    mean_gap = 1.0 / rate
    gaps_needed = max(n - 1, 0)
    match process:
        case "poisson":
            gaps = rng.exponential(mean_gap, size=gaps_needed)
        case "gamma":
            shape = 1.0 / cv**2
            gaps = rng.gamma(shape, mean_gap / shape, size=gaps_needed)
        case "constant":
            gaps = np.full(gaps_needed, mean_gap)
        case _:
            raise unknown_name_error("arrival process", process, ARRIVAL_PROCESSES)
    return np.concatenate(([0.0], np.cumsum(gaps)))[:n]
