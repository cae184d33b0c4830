"""Running the `kairos` command inside tests."""

from __future__ import annotations

from kairos.cli.errors import run_app
from kairos.cli.main import app


def kairos(capsys, *args: str) -> tuple[int, str, str]:
    """Run `kairos ARGS`; return (exit code, stdout, stderr)."""
    code = run_app(app, list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(capsys, *args: str) -> str:
    """Run a command that must fail with exactly one line on stderr and no traceback; return it."""
    code, _, err = kairos(capsys, *args)
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]
