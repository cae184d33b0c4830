"""A measured run on disk: `meta.json` plus `requests.jsonl`, as `kairos bench` writes it.

The format is the one of shared/data/validation/*: one JSON object per request
with `request_id`, `input_toks`, `output_toks`, `arrival_time` (wall clock) and
`queued_ts`, `scheduled_ts`, `first_token_ts`, `last_token_ts` on one monotonic
clock, so TTFT = first_token_ts - queued_ts, E2E = last_token_ts - queued_ts and
TPOT = (last - first) / (output_toks - 1). A client cannot see scheduling, so
bench writes `scheduled_ts: null`. A request that failed carries one more key,
`error` (its reason); successful lines keep exactly the shared keys, so tools
written for engine-side runs read ours unchanged.

A run may also hold `shared_spans.jsonl`: for each request whose prompt shares
content with others (a system prompt, an earlier turn), its spans as
`{"request_id": ..., "shared": [[key, start, length], ...]}` (see
kairos.workload.Span). `kairos validate` replays them, so that the simulated
engine's prefix cache sees the sharing the real one saw.

A run against `kairos serve` also holds the engine's own steps,
`engine_steps.jsonl` (kairos.bench.engine_steps).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kairos.bench.engine_steps import STEPS_FILE, read_engine_steps
from kairos.calibration.profile import MeasuredPoint
from kairos.errors import KairosError
from kairos.metrics import RequestRecord
from kairos.workload.spec import RequestSpec, Span
from kairos.workload.tracefile import parse_jsonl

RUN_SCHEMA_VERSION = 1
META_FILE = "meta.json"
REQUESTS_FILE = "requests.jsonl"
SHARED_FILE = "shared_spans.jsonl"
# Key order of a line, as in the shared runs (error last, and only when set).
LINE_KEYS: tuple[str, ...] = (
    "request_id", "input_toks", "output_toks", "arrival_time",
    "queued_ts", "scheduled_ts", "first_token_ts", "last_token_ts",
)
_REQUIRED_NUMBERS = ("queued_ts",)
_OPTIONAL_NUMBERS = ("arrival_time", "scheduled_ts", "first_token_ts", "last_token_ts")


@dataclass(frozen=True, slots=True)
class RequestLine:
    """One line of requests.jsonl: raw timestamps in seconds, as measured."""

    request_id: str
    input_toks: int
    output_toks: int
    arrival_time: float | None
    queued_ts: float
    scheduled_ts: float | None
    first_token_ts: float | None
    last_token_ts: float | None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        line: dict[str, Any] = {key: getattr(self, key) for key in LINE_KEYS}
        if self.error is not None:
            line["error"] = self.error
        return line


@dataclass(frozen=True, slots=True)
class MeasuredRequest:
    """One request of a measured run, in seconds relative to the run's first `queued_ts`.

    Latencies are None where the timestamps behind them are missing: `queue_s`
    for client-side runs, `ttft_s` and `e2e_s` for a request that failed before
    its first or last token, `tpot_s` below two output tokens. `error` is the
    failure reason of a request that did not complete.
    """

    request_id: str
    input_tokens: int
    output_tokens: int
    arrival_s: float
    queue_s: float | None
    ttft_s: float | None
    e2e_s: float | None
    tpot_s: float | None
    error: str | None = None

    @property
    def completed(self) -> bool:
        return self.error is None and self.e2e_s is not None

    def to_record(self, spec: RequestSpec | None = None) -> RequestRecord:
        """The same timeline as a metrics RequestRecord (arrival = queued_ts), with the
        class (SLO, tenant, deadline) of the `spec` it was sent for."""

        def at(offset: float | None) -> float | None:
            return None if offset is None else self.arrival_s + offset

        return RequestRecord(
            request_id=self.request_id,
            arrival_s=self.arrival_s,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            first_scheduled_s=at(self.queue_s),
            first_token_s=at(self.ttft_s),
            # A failed request has no finish, even if some tokens came back.
            finish_s=at(self.e2e_s) if self.error is None else None,
            rejected_reason=self.error,
            slo=None if spec is None else spec.slo,
            tenant=None if spec is None else spec.tenant,
            slo_class=None if spec is None else spec.slo_class,
            deadline_s=None if spec is None else spec.deadline_s,
        )


@dataclass(frozen=True, slots=True)
class MeasuredRun:
    """A measured run: its meta.json as a dict, its requests in file order, the
    shared prompt spans of those that have some and the engine's steps (each
    empty when the run records none)."""

    path: Path
    meta: dict[str, Any]
    requests: list[MeasuredRequest]
    shared: dict[str, tuple[Span, ...]] = field(default_factory=dict)
    steps: list[MeasuredPoint] = field(default_factory=list)
    # The earliest queued_ts, the requests' arrival 0, on the clock of the steps' start_s.
    zero_s: float = 0.0

    @property
    def completed(self) -> list[MeasuredRequest]:
        return [r for r in self.requests if r.completed]


def measure(lines: Sequence[RequestLine]) -> list[MeasuredRequest]:
    """Per-request latencies of `lines`, arrivals relative to their earliest queued_ts."""
    if not lines:
        return []
    t0 = min(line.queued_ts for line in lines)
    return [_measured(line, t0) for line in lines]


def write_measured_run(run_dir: str | Path, meta: dict[str, Any], lines: Sequence[RequestLine],
                       shared: Mapping[str, tuple[Span, ...]] | None = None) -> list[Path]:
    """Write meta.json, requests.jsonl and, where any request has shared spans,
    shared_spans.jsonl under `run_dir` (created); return their paths."""
    directory = Path(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    meta_path = directory / META_FILE
    meta_path.write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    requests_path = directory / REQUESTS_FILE
    with requests_path.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line.to_json(), allow_nan=False) + "\n")
    paths = [meta_path, requests_path]
    shared_path = directory / SHARED_FILE
    shared_path.unlink(missing_ok=True)  # a rerun into the same directory must not keep stale spans
    if shared:
        with shared_path.open("w", encoding="utf-8") as handle:
            for request_id, spans in shared.items():
                row = {"request_id": request_id, "shared": [[s.key, s.start, s.length] for s in spans]}
                handle.write(json.dumps(row) + "\n")
        paths.append(shared_path)
    return paths


def load_measured_run(run_dir: str | Path) -> MeasuredRun:
    """Read a measured run directory; malformed input is a KairosError "FILE:LINE: ..."."""
    directory = Path(run_dir)
    if not directory.is_dir():
        raise KairosError(f"{directory}: no such run directory")
    meta = _read_meta(directory / META_FILE)
    lines = _read_lines(directory / REQUESTS_FILE)
    shared_path = directory / SHARED_FILE
    shared = _read_shared(shared_path, {line.request_id for line in lines}) if shared_path.exists() else {}
    steps_path = directory / STEPS_FILE
    steps = read_engine_steps(steps_path) if steps_path.exists() else []
    zero_s = min((line.queued_ts for line in lines), default=0.0)
    return MeasuredRun(directory, meta, measure(lines), shared, steps, zero_s)


def _measured(line: RequestLine, t0: float) -> MeasuredRequest:
    def since_queued(ts: float | None) -> float | None:
        return None if ts is None else ts - line.queued_ts

    ttft = since_queued(line.first_token_ts)
    e2e = since_queued(line.last_token_ts)
    tpot = None
    if ttft is not None and e2e is not None and line.output_toks > 1:
        tpot = (e2e - ttft) / (line.output_toks - 1)
    return MeasuredRequest(
        request_id=line.request_id,
        input_tokens=line.input_toks,
        output_tokens=line.output_toks,
        arrival_s=line.queued_ts - t0,
        queue_s=since_queued(line.scheduled_ts),
        ttft_s=ttft,
        e2e_s=e2e,
        tpot_s=tpot,
        error=line.error,
    )


def _read_meta(path: Path) -> dict[str, Any]:
    text = _read_text(path)
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KairosError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(meta, dict):
        raise KairosError(f"{path}:1: expected a JSON object, got {type(meta).__name__}")
    version = meta.get("schema_version")
    if version is None:
        raise KairosError(f"{path}:1: missing field 'schema_version'")
    if version != RUN_SCHEMA_VERSION:
        raise KairosError(f"{path}:1: unsupported schema_version {version!r}"
                          f" (this Kairos reads {RUN_SCHEMA_VERSION})")
    return meta


def _read_lines(path: Path) -> list[RequestLine]:
    text = _read_text(path)
    if not text.strip():
        raise KairosError(f"{path}: no requests")
    records, numbers = parse_jsonl(text, path)
    lines: list[RequestLine] = []
    seen: set[str] = set()
    for obj, number in zip(records, numbers):
        line = _parse_line(obj, f"{path}:{number}")
        if line.request_id in seen:
            raise KairosError(f"{path}:{number}: duplicate request_id '{line.request_id}'")
        seen.add(line.request_id)
        lines.append(line)
    return lines


def _read_shared(path: Path, request_ids: set[str]) -> dict[str, tuple[Span, ...]]:
    records, numbers = parse_jsonl(_read_text(path), path)
    shared: dict[str, tuple[Span, ...]] = {}
    for obj, number in zip(records, numbers):
        where = f"{path}:{number}"
        request_id = obj.get("request_id")
        if not isinstance(request_id, str) or request_id not in request_ids:
            raise KairosError(f"{where}: request_id {request_id!r} is not a request of {REQUESTS_FILE}")
        if request_id in shared:
            raise KairosError(f"{where}: duplicate request_id '{request_id}'")
        spans = obj.get("shared")
        if not isinstance(spans, list) or not all(_is_span(span) for span in spans):
            raise KairosError(f"{where}: shared must be a list of [key, start, length] integers"
                              " (start >= 0, length >= 1)")
        shared[request_id] = tuple(Span(*span) for span in spans)
    return shared


def _is_span(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            and value[1] >= 0 and value[2] >= 1)


def _parse_line(obj: dict[str, Any], where: str) -> RequestLine:
    for key in ("request_id", "input_toks", "output_toks", *_REQUIRED_NUMBERS):
        if key not in obj:
            raise KairosError(f"{where}: missing field '{key}'")
    request_id = obj["request_id"]
    if not isinstance(request_id, str | int) or isinstance(request_id, bool):
        raise KairosError(f"{where}: request_id must be a string or an integer")
    error = obj.get("error")
    if error is not None and not isinstance(error, str):
        raise KairosError(f"{where}: error must be a string or null")
    times = {key: _number(obj, key, where, required=key in _REQUIRED_NUMBERS)
             for key in (*_REQUIRED_NUMBERS, *_OPTIONAL_NUMBERS)}
    line = RequestLine(
        request_id=str(request_id),
        input_toks=_count(obj, "input_toks", where),
        output_toks=_count(obj, "output_toks", where),
        error=error,
        **times,  # type: ignore[arg-type]
    )
    if error is None and (line.first_token_ts is None or line.last_token_ts is None):
        raise KairosError(f"{where}: a completed request needs first_token_ts and last_token_ts"
                          " (or an 'error' saying why it failed)")
    _check_order(line, where)
    return line


def _count(obj: dict[str, Any], key: str, where: str) -> int:
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise KairosError(f"{where}: {key} must be an integer >= 0, got {value!r}")
    return value


def _number(obj: dict[str, Any], key: str, where: str, *, required: bool) -> float | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise KairosError(f"{where}: {key} must be a number, got null")
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise KairosError(f"{where}: {key} must be a finite number, got {value!r}")
    return float(value)


def _check_order(line: RequestLine, where: str) -> None:
    """A timeline never goes backwards: queued <= scheduled <= first token <= last token."""
    previous_key, previous = "queued_ts", line.queued_ts
    for key in ("scheduled_ts", "first_token_ts", "last_token_ts"):
        value = getattr(line, key)
        if value is None:
            continue
        if value < previous:
            raise KairosError(f"{where}: {key} {value} is before {previous_key} {previous}")
        previous_key, previous = key, value


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KairosError(f"{path}: missing (a measured run holds {META_FILE} and"
                          f" {REQUESTS_FILE})") from None
    except OSError as exc:
        raise KairosError(f"{path}: cannot read: {exc.strerror}") from None
