"""User-facing errors: one clear line, shown without a traceback by the CLI."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class KairosError(Exception):
    """An error caused by user input (bad file, unknown name, impossible config)."""


def unknown_name_error(kind: str, name: str, known: Iterable[str]) -> KairosError:
    """Build an 'unknown X' error that lists the closest known names."""
    known = sorted(known)
    close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known)}"
    return KairosError(f"unknown {kind} '{name}': {hint}")
