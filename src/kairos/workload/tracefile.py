"""Shared machinery of the trace loaders: reading, validating and replay selection.

Every loader reports bad input as a KairosError "FILE:LINE: what is wrong" (line
numbers 1-based, as an editor shows them). Columns are converted with numpy in
one call; only when that fails do we walk the column again to name the bad line,
so well-formed traces load at numpy speed.
"""

from __future__ import annotations

import csv
import functools
import gc
import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ParamSpec, TypeVar

import numpy as np

from kairos.errors import KairosError
from kairos.workload.spec import RequestSpec

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class TraceLoad:
    """Requests read from a trace file, plus how many rows were skipped and why."""

    path: str
    requests: list[RequestSpec]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> number of rows

    @property
    def num_skipped(self) -> int:
        """Total number of rows left out."""
        return sum(self.skipped.values())

    @property
    def warnings(self) -> list[str]:
        """What was skipped, as printable lines for the CLI (none when nothing was)."""
        return [f"{self.path}: skipped {describe_skips(self.skipped)}"] if self.skipped else []


def describe_skips(skipped: dict[str, int]) -> str:
    """'3 rows with zero input tokens, 1 row with ...' for messages."""
    return ", ".join(f"{n} row{'' if n == 1 else 's'} with {why}" for why, n in skipped.items())


def without_gc(fn: Callable[P, R]) -> Callable[P, R]:
    """Run `fn` with the cyclic garbage collector paused.

    Loading or generating a workload builds hundreds of thousands of small
    acyclic objects (spans, specs); each allocation burst would trigger
    collections that scan them all again for nothing, which costs about 40% of
    the load time of a large trace.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return wrapper


@contextmanager
def _readable(path: str | Path) -> Iterator[None]:
    """Turn the ways a file can fail to open or decode into one-line KairosErrors."""
    try:
        yield
    except FileNotFoundError:
        raise KairosError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise KairosError(f"{path}: is a directory, expected a trace file") from None
    except PermissionError:
        raise KairosError(f"{path}: permission denied") from None
    except UnicodeDecodeError:
        raise KairosError(f"{path}: not a UTF-8 text file") from None


def read_text(path: str | Path) -> str:
    """The whole file as text, or a KairosError saying why it cannot be read."""
    with _readable(path):
        return Path(path).read_text(encoding="utf-8")


def first_line(path: str | Path) -> str:
    """The first non-blank line of a file, stripped ("" if there is none)."""
    with _readable(path), open(path, encoding="utf-8") as f:
        return next((line.strip() for line in f if line.strip()), "")


@dataclass(frozen=True, slots=True)
class CsvTable:
    """The rows of a CSV file with the file line each row came from."""

    path: str
    header: list[str]
    rows: list[list[str]]
    lines: list[int]

    def header_error(self, what: str) -> KairosError:
        """A KairosError about the header line."""
        return KairosError(f"{self.path}:1: {what}; header is {','.join(self.header)!r}")

    def error(self, row: int, message: str) -> KairosError:
        """A KairosError pointing at data row `row` (0-based)."""
        return KairosError(f"{self.path}:{self.lines[row]}: {message}")

    def column(self, name: str) -> list[str]:
        """The raw text of column `name` (which must be in the header)."""
        index = self.header.index(name)
        return [row[index] for row in self.rows]

    def int_column(self, name: str) -> np.ndarray:
        """Column `name` as non-negative int64."""
        values = self.column(name)
        try:
            array = np.array(values, dtype=np.int64)
        except (ValueError, OverflowError):
            array = np.array([self._int(row, name, text) for row, text in enumerate(values)])
        return self._check_non_negative(name, values, array)

    def float_column(self, name: str) -> np.ndarray:
        """Column `name` as finite, non-negative float64."""
        values = self.column(name)
        try:
            array = np.array(values, dtype=np.float64)
        except ValueError:
            array = np.array([self._float(row, name, text) for row, text in enumerate(values)])
        infinite = np.flatnonzero(~np.isfinite(array))
        if infinite.size:
            row = int(infinite[0])
            raise self.error(row, f"{name} is not a finite number: {values[row]!r}")
        return self._check_non_negative(name, values, array)

    def _int(self, row: int, name: str, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise self.error(row, f"{name} is not an integer: {text!r}") from None
        if not -(2**63) <= value < 2**63:
            raise self.error(row, f"{name} is out of range: {text.strip()}")
        return value

    def _float(self, row: int, name: str, text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise self.error(row, f"{name} is not a number: {text!r}") from None

    def _check_non_negative(self, name: str, values: list[str], array: np.ndarray) -> np.ndarray:
        negative = np.flatnonzero(array < 0)
        if negative.size:
            row = int(negative[0])
            raise self.error(row, f"{name} must not be negative, got {values[row].strip()}")
        return array


def read_csv(path: str | Path, columns: list[str], trace_kind: str, *, exact: bool) -> CsvTable:
    """Parse a CSV trace whose header has `columns` (exactly that header if `exact`).

    Blank lines are ignored. The header is checked before the rows, as a wrong
    header usually means a wrong file, which explains any row errors too.
    """
    text = read_text(path)
    reader = csv.reader(io.StringIO(text))
    try:
        header = [name.strip() for name in next(reader, [])]
        if not header:
            raise KairosError(f"{path}: file is empty" if not text else f"{path}:1: no header")
        table = CsvTable(str(path), header, [], [])
        if exact and header != columns:
            raise table.header_error(f"not {trace_kind}: expected header {','.join(columns)!r}")
        missing = [name for name in columns if name not in header]
        if missing:
            raise table.header_error(f"not {trace_kind}: no column {missing[0]!r}")
        for row in reader:
            if row:
                table.rows.append(row)
                table.lines.append(reader.line_num)
    except csv.Error as exc:
        raise KairosError(f"{path}:{reader.line_num}: bad CSV: {exc}") from None
    if not table.rows:
        raise KairosError(f"{path}: trace has no rows after its header")
    for index, row in enumerate(table.rows):
        if len(row) != len(header):
            raise table.error(index, f"expected {len(header)} fields, got {len(row)}")
    return table


def read_jsonl(path: str | Path) -> tuple[list[dict], list[int]]:
    """The JSON objects of a JSON-lines file and their line numbers; blank lines are ignored."""
    return parse_jsonl(read_text(path), path)


def parse_jsonl(text: str, path: str | Path) -> tuple[list[dict], list[int]]:
    """`read_jsonl` on text already read from `path` (named in the errors)."""
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not numbered:
        raise KairosError(f"{path}: file is empty")
    lines = [n for n, _ in numbered]
    texts = [line for _, line in numbered]
    # One json.loads over the whole file is several times faster than one per line;
    # a count mismatch means some line held more or less than one value.
    try:
        records = json.loads("[" + ",".join(texts) + "]")
    except json.JSONDecodeError:
        records = None
    if records is None or len(records) != len(texts):
        records = []
        for number, text in numbered:
            try:
                records.append(json.loads(text))
            except json.JSONDecodeError as exc:
                raise KairosError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
    for record, number in zip(records, lines):
        if not isinstance(record, dict):
            kind = type(record).__name__
            raise KairosError(f"{path}:{number}: expected a JSON object, got {kind}")
    return records, lines


def json_number(
    record: dict, key: str, path: str | Path, line: int, *, integer: bool
) -> int | float:
    """Field `key` of a JSON record as a non-negative number (an int when `integer`)."""
    if key not in record:
        raise KairosError(f"{path}:{line}: missing field '{key}'")
    value = record[key]
    kinds = (int,) if integer else (int, float)
    # bool is an int subclass, but `true` as a token count is a mistake.
    if isinstance(value, bool) or not isinstance(value, kinds) or value != value:
        what = "an integer" if integer else "a number"
        raise KairosError(f"{path}:{line}: {key} must be {what}, got {json.dumps(value)}")
    if value < 0 or value == float("inf"):
        raise KairosError(f"{path}:{line}: {key} must be a finite number >= 0, got {value}")
    return value


def drop_empty_requests(
    prompt: np.ndarray, output: np.ndarray, output_reason: str
) -> tuple[np.ndarray, dict[str, int]]:
    """Mask of rows with at least one prompt and one output token, and counts of the others.

    A request with no prompt cannot be prefilled and one with no output never
    reached the model (in BurstGPT, a failed request), so replaying either would
    only distort the load.
    """
    no_output = output == 0
    no_prompt = (prompt == 0) & ~no_output
    skipped = {output_reason: int(no_output.sum()), "zero input tokens": int(no_prompt.sum())}
    return ~(no_prompt | no_output), {why: n for why, n in skipped.items() if n}


def select_for_replay(
    path: str | Path,
    arrival: np.ndarray,
    keep: np.ndarray,
    skipped: dict[str, int],
    time_scale: float,
    num_requests: int | None,
    units_per_s: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows to replay (indices into the file's rows) in arrival order, and their arrival times.

    Times (`arrival`, in the file's unit) are made relative to the first kept
    arrival and divided by `time_scale` (2.0 replays twice as fast); `num_requests`
    keeps the first that many arrivals. Converting to seconds only after the
    subtraction keeps exact gaps exact (9 ms - 5 ms is 0.004 s, not 0.0039999).
    `skipped` only explains an empty result.
    """
    check_replay_args(time_scale, num_requests)
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        why = f"; skipped {describe_skips(skipped)}" if skipped else ""
        raise KairosError(f"{path}: no requests left to replay{why}")
    rows = rows[np.argsort(arrival[rows], kind="stable")][:num_requests]
    times = arrival[rows]
    return rows, (times - times[0]) / (units_per_s * time_scale)


def check_replay_args(time_scale: float, num_requests: int | None) -> None:
    """Reject replay settings that cannot mean anything."""
    if not time_scale > 0 or time_scale == float("inf"):
        raise KairosError(f"time_scale must be a finite number > 0, got {time_scale}")
    if num_requests is not None and num_requests < 1:
        raise KairosError(f"num_requests must be >= 1, got {num_requests}")

