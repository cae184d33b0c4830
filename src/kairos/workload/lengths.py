"""Token-length distributions of synthetic workloads: their config models and sampling.

In a scenario file a distribution is an object picked by `kind`, e.g.
`{kind: lognormal, median: 700, sigma: 1.0, max: 8192}`; a bare integer means
a fixed length.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from kairos.workload.traces import TraceFormat, load_trace


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _min_not_above_max(self) -> _Dist:
        low, high = getattr(self, "min", None), getattr(self, "max", None)
        if low is not None and high is not None and low > high:
            raise ValueError(f"min ({low}) must not exceed max ({high})")
        return self


def _min_field() -> Any:
    return Field(1, ge=1, description="Smallest length; smaller draws become this. Default 1.")


def _max_field() -> Any:
    return Field(
        None, ge=1, description="Largest length; larger draws become this. Default: no limit."
    )


class FixedLength(_Dist):
    """Every draw is `value`."""

    kind: Literal["fixed"] = Field("fixed", description="Distribution type: fixed.")
    value: int = Field(256, ge=1, description="The length in tokens. Default 256.")


class UniformLength(_Dist):
    """Integers drawn uniformly from [min, max], both ends included."""

    kind: Literal["uniform"] = Field("uniform", description="Distribution type: uniform.")
    min: int = Field(1, ge=1, description="Smallest length. Default 1.")
    max: int = Field(1024, ge=1, description="Largest length. Default 1024.")


class LognormalLength(_Dist):
    """round(median * exp(sigma * Z)) for standard normal Z, clipped to [min, max].

    Given by its median (the typical length) and sigma (the spread of log length);
    its mean is median * exp(sigma**2 / 2), so sigma 1.0 puts the mean 65% above
    the median.
    """

    kind: Literal["lognormal"] = Field("lognormal", description="Distribution type: lognormal.")
    median: float = Field(
        512.0, gt=0, allow_inf_nan=False, description="Median length in tokens. Default 512."
    )
    sigma: float = Field(
        1.0, ge=0, allow_inf_nan=False, description="Std. deviation of ln(length). Default 1.0."
    )
    min: int = _min_field()
    max: int | None = _max_field()


class EmpiricalLength(_Dist):
    """Lengths resampled (with replacement) from a trace file, clipped to [min, max]."""

    kind: Literal["empirical"] = Field("empirical", description="Distribution type: empirical.")
    path: str | None = Field(None, description="Trace file to sample from (required).")
    format: TraceFormat = Field("auto", description="Format of that trace. Default: detected.")
    column: Literal["input", "output"] | None = Field(
        None,
        description="Which lengths to sample: the trace's input or output lengths."
        " Default: the kind being drawn (input for input lengths, output for outputs).",
    )
    min: int = _min_field()
    max: int | None = _max_field()

    @model_validator(mode="after")
    def _has_path(self) -> EmpiricalLength:
        if not self.path:
            raise ValueError("an empirical length distribution needs a trace `path`")
        return self


LengthDist = Annotated[
    FixedLength | UniformLength | LognormalLength | EmpiricalLength, Field(discriminator="kind")
]
# Counts such as turns per session: resampling a trace's lengths would make no sense.
CountDist = Annotated[FixedLength | UniformLength | LognormalLength, Field(discriminator="kind")]


def fixed_if_int(value: object) -> object:
    """Let a bare integer stand for a fixed length (a pydantic "before" validator)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return {"kind": "fixed", "value": value}
    return value


def sample_lengths(
    dist: FixedLength | UniformLength | LognormalLength | EmpiricalLength,
    n: int,
    rng: np.random.Generator,
    column: Literal["input", "output"] = "input",
) -> np.ndarray:
    """`n` draws from `dist` as int64; `column` is the default column of an empirical one."""
    match dist:
        case FixedLength():
            return np.full(n, dist.value, dtype=np.int64)
        case UniformLength():
            return rng.integers(dist.min, dist.max, size=n, endpoint=True, dtype=np.int64)
        case LognormalLength():
            draws = np.rint(dist.median * np.exp(dist.sigma * rng.standard_normal(n)))
        case EmpiricalLength():
            draws = rng.choice(_trace_lengths(dist, dist.column or column), size=n)
    upper = np.inf if dist.max is None else dist.max
    return np.clip(draws, dist.min, upper).astype(np.int64)


def _trace_lengths(dist: EmpiricalLength, column: str) -> np.ndarray:
    specs = load_trace(dist.path, dist.format).requests
    field = "prompt_len" if column == "input" else "output_len"
    return np.array([getattr(spec, field) for spec in specs], dtype=np.int64)
