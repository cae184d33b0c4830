"""Help text built from the registries, so that a newly registered plug-in shows up in `--help`."""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from kairos.registry import Registry


def plugins_epilog(*options: tuple[str, Registry[Any]]) -> str:
    """A command's epilog: under each option, its names with their one-line summaries."""
    lines: list[str] = []
    for option, registry in options:
        lines.append(f"[bold]{option}[/]")
        lines += [f"  {escape(name)}: {escape(summary)}" for name, summary in registry.summaries().items()]
    # Typer's help keeps single line breaks but strips the indent shared by every line past the
    # first: a leading blank line keeps the entries indented under their option.
    return "\n" + "\n".join(lines)
