"""Run the typer app so that bad input ends in one line on stderr, not a traceback."""

from __future__ import annotations

import sys

import click
import typer
from rich.console import Console

from kairos.errors import KairosError

DEBUG_FLAG = "--debug"
# Typer >= 0.22 vendors click, so its exceptions are not click's; catch either kind.
_EXIT = (click.exceptions.Exit, typer.Exit)
_USAGE = (click.ClickException, getattr(typer, "TyperException", click.ClickException))
_ABORT = (click.Abort, typer.Abort, KeyboardInterrupt)


def run_app(app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run `app`; return the exit code. `--debug` anywhere shows tracebacks instead."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args
    if debug:
        args = [a for a in args if a != DEBUG_FLAG]
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        app(args=args, prog_name="kairos", standalone_mode=False)
    except _EXIT as exc:
        return exc.exit_code
    except _USAGE as exc:
        exc.show()
        return exc.exit_code
    except _ABORT:
        err.print("aborted")
        return 130
    except KairosError as exc:
        if debug:
            raise
        err.print(f"[bold red]error:[/] {exc}", markup=True)
        return 2
    except Exception as exc:  # a bug, not bad input: still one line unless --debug
        if debug:
            raise
        err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc} "
                  f"(rerun with {DEBUG_FLAG} for the traceback)", markup=True)
        return 1
    return 0
