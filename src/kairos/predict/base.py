"""What an output-length predictor answers, and how far off it was."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from kairos.registry import Registry
from kairos.workload.spec import RequestSpec


class OutputPredictor(Protocol):
    """Predicts how many tokens a request will generate, before (or while) it runs.

    `predict(spec, generated)` is the predicted total output, at least
    `generated + 1`: a request that has produced `generated` tokens and is still
    running produces at least one more. `observe` learns from a finished request.
    """

    def predict(self, spec: RequestSpec, generated: int = 0) -> int: ...

    def observe(self, spec: RequestSpec, output_len: int) -> None: ...


PREDICTORS: Registry[type] = Registry("output-length predictor")


@dataclass(slots=True)
class PredictionErrors:
    """Error of the predictions made when requests arrived, against their finished lengths."""

    requests: int = 0
    abs_error_tokens: float = 0.0
    abs_error_ratio: float = 0.0  # |predicted - actual| / actual, summed
    signed_error_tokens: float = 0.0

    def add(self, predicted: int, actual: int) -> None:
        error = predicted - actual
        self.requests += 1
        self.abs_error_tokens += abs(error)
        self.abs_error_ratio += abs(error) / max(actual, 1)
        self.signed_error_tokens += error

    def merge(self, other: PredictionErrors) -> None:
        self.requests += other.requests
        self.abs_error_tokens += other.abs_error_tokens
        self.abs_error_ratio += other.abs_error_ratio
        self.signed_error_tokens += other.signed_error_tokens

    def summary(self) -> dict[str, float | int | None]:
        """MAE in tokens, mean absolute percentage error and mean bias (None before any request finished)."""
        n = self.requests
        return {
            "requests": n,
            "mae_tokens": self.abs_error_tokens / n if n else None,
            "mape_pct": 100.0 * self.abs_error_ratio / n if n else None,
            "bias_tokens": self.signed_error_tokens / n if n else None,
        }
