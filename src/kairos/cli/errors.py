"""Run the typer app so that bad input ends in one line on stderr, not a traceback."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from kairos.errors import KairosError

DEBUG_FLAG = "--debug"
try:
    import click
except ImportError:  # recent typer vendors click and does not install it
    click = None
# Catch typer's exceptions and, where typer still uses the click package, click's.
_EXIT: tuple[type[BaseException], ...] = (typer.Exit, *((click.exceptions.Exit,) if click else ()))
_USAGE: tuple[type[BaseException], ...] = (
    *((typer.TyperException,) if hasattr(typer, "TyperException") else ()),
    *((click.ClickException,) if click else ()),
)
_ABORT: tuple[type[BaseException], ...] = (typer.Abort, KeyboardInterrupt, *((click.Abort,) if click else ()))


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
        err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
        return 2
    except Exception as exc:  # a bug, not bad input: still one line unless --debug
        if debug:
            raise
        err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} "
                  f"(rerun with {DEBUG_FLAG} for the traceback)", markup=True)
        return 1
    return 0
