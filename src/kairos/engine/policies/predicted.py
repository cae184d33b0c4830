"""Which output-length predictor a policy runs with: the rule `kairos simulate` and `kairos serve` share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kairos.engine.policies.base import POLICIES
from kairos.errors import KairosError
from kairos.predict import OutputPredictor, make_predictor

# Past-Future's online history: it needs no oracle, so it works in a real server too.
DEFAULT_PREDICTOR = "histogram"


def needs_predictor(policy: str) -> bool:
    """Whether the registered policy `policy` ranks or admits by predicted output lengths."""
    return bool(getattr(POLICIES.get(policy), "needs_predictor", False))


def policy_predictor(policy: str, predictor: str | None = None,
                     options: Mapping[str, Any] | None = None) -> OutputPredictor | None:
    """The predictor named, with its knobs; unnamed, `histogram` for a policy that needs one, else none."""
    options = dict(options or {})
    if predictor is None:
        if not needs_predictor(policy):
            if options:
                raise KairosError(f"predictor options given without a predictor, and scheduling policy "
                                  f"'{POLICIES.canonical(policy)}' uses none: name one (e.g. histogram)")
            return None
        predictor = DEFAULT_PREDICTOR
    return make_predictor(predictor, **options)
