"""Output-length predictors (`kairos.predict`): what length-aware policies rank by.

Registered by name in `PREDICTORS`; `make_predictor(name, **knobs)` builds one.
"""

from __future__ import annotations

from typing import Any

from kairos.errors import KairosError
from kairos.predict import predictors as _predictors  # noqa: F401  (registers the built-ins)
from kairos.predict.base import PREDICTORS, OutputPredictor, PredictionErrors


def make_predictor(name: str, **knobs: Any) -> OutputPredictor:
    """The registered predictor `name` with its knobs; unknown names or knobs are one-line errors."""
    cls = PREDICTORS.get(name)
    PREDICTORS.check_knobs(name, knobs)
    try:
        return cls(**knobs)
    except (TypeError, ValueError) as e:
        raise KairosError(f"predictor '{PREDICTORS.canonical(name)}': {e}") from None


__all__ = ["PREDICTORS", "OutputPredictor", "PredictionErrors", "make_predictor"]
