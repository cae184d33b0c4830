"""The consoles every command prints to."""

from __future__ import annotations

from rich.console import Console

# Tables keep their full width when piped to a file (rich would assume 80 columns).
out = Console(highlight=False, width=None if Console().is_terminal else 160)
err = Console(stderr=True, highlight=False)
