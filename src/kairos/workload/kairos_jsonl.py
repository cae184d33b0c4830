"""Kairos's own workload file: one RequestSpec per JSON line, exactly round-trippable.

Each line holds the RequestSpec fields by name; fields at their default are left
out. Required: `request_id`, `arrival_s`, `prompt_len`, `output_len`. Optional:
`shared` (`[key, start, length]` lists), `prompt_token_ids`, `session_id`, the
request class (`tenant`, `priority` (an int, lower first), `slo` (an object of
its set targets `ttft_ms`, `tpot_ms`, `e2e_ms`; `{}` for an SLO with none),
`slo_class` (a name such as "interactive"), `deadline_s` (seconds after arrival,
> 0)), and `after` with `think_s` for a closed-loop turn. Floats are written with Python's shortest
round-trip repr, so loading a saved workload gives back equal specs.
"""

from __future__ import annotations

import json
from pathlib import Path

from kairos.errors import KairosError, unknown_name_error
from kairos.workload.spec import SLO, RequestSpec, Span
from kairos.workload.tracefile import TraceLoad, read_jsonl, without_gc

_FIELDS = (
    "request_id", "arrival_s", "prompt_len", "output_len", "shared", "prompt_token_ids",
    "session_id", "tenant", "priority", "slo", "slo_class", "deadline_s", "after", "think_s",
)
_SLO_FIELDS = ("ttft_ms", "tpot_ms", "e2e_ms")


def spec_to_record(spec: RequestSpec) -> dict:
    """The JSON object for one spec, defaults omitted."""
    record: dict = {
        "request_id": spec.request_id,
        "arrival_s": float(spec.arrival_s),
        "prompt_len": spec.prompt_len,
        "output_len": spec.output_len,
    }
    if spec.shared:
        record["shared"] = [[span.key, span.start, span.length] for span in spec.shared]
    if spec.prompt_token_ids is not None:
        record["prompt_token_ids"] = list(spec.prompt_token_ids)
    for name in ("session_id", "tenant"):
        if getattr(spec, name) is not None:
            record[name] = getattr(spec, name)
    if spec.priority != 0:
        record["priority"] = spec.priority
    if spec.slo is not None:
        record["slo"] = {
            name: float(getattr(spec.slo, name))
            for name in _SLO_FIELDS
            if getattr(spec.slo, name) is not None
        }
    if spec.slo_class is not None:
        record["slo_class"] = spec.slo_class
    if spec.deadline_s is not None:
        record["deadline_s"] = float(spec.deadline_s)
    if spec.after is not None:
        record["after"] = spec.after
    if spec.think_s != 0.0:
        record["think_s"] = float(spec.think_s)
    return record


def save_kairos_jsonl(path: str | Path, specs: list[RequestSpec]) -> None:
    """Write `specs` as a Kairos JSONL workload file."""
    lines = (json.dumps(spec_to_record(spec), allow_nan=False) + "\n" for spec in specs)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(lines)


@without_gc
def load_kairos_jsonl(path: str | Path) -> TraceLoad:
    """Read a Kairos JSONL workload file back, specs in file order and unchanged.

    Besides field types, it checks that request ids are unique and that `after`
    names a request earlier in the file (so any prefix of the file is closed).
    """
    records, lines = read_jsonl(path)
    seen: set[str] = set()
    specs = []
    for record, line in zip(records, lines):
        spec = _RecordReader(path, line, record).spec()
        if spec.request_id in seen:
            raise KairosError(f"{path}:{line}: duplicate request_id {spec.request_id!r}")
        if spec.after is not None and spec.after not in seen:
            raise KairosError(
                f"{path}:{line}: after={spec.after!r} does not name an earlier request"
            )
        seen.add(spec.request_id)
        specs.append(spec)
    return TraceLoad(str(path), specs)


class _RecordReader:
    """Checks and converts the fields of one JSON record, naming its line on error."""

    def __init__(self, path: str | Path, line: int, record: dict) -> None:
        self.where = f"{path}:{line}"
        self.record = record

    def error(self, message: str) -> KairosError:
        return KairosError(f"{self.where}: {message}")

    def spec(self) -> RequestSpec:
        for name in self.record:
            if name not in _FIELDS:
                raise self.error(str(unknown_name_error("field", name, _FIELDS)))
        prompt_len = self.integer("prompt_len", minimum=1, required=True)
        output_len = self.integer("output_len", minimum=1, required=True)
        shared = self.spans(prompt_len + output_len)
        token_ids = self.token_ids(prompt_len)
        return RequestSpec(
            request_id=self.text("request_id", required=True),
            arrival_s=self.number("arrival_s", minimum=0.0, required=True),
            prompt_len=prompt_len,
            output_len=output_len,
            shared=shared,
            prompt_token_ids=token_ids,
            session_id=self.text("session_id"),
            tenant=self.text("tenant"),
            priority=self.integer("priority", minimum=None, default=0),
            slo=self.slo(),
            slo_class=self.text("slo_class"),
            deadline_s=self.deadline(),
            after=self.text("after"),
            think_s=self.number("think_s", minimum=0.0, default=0.0),
        )

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.record.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise self.error(f"{name} must be a non-empty string, got {json.dumps(value)}")
        return value

    def integer(
        self, name: str, *, minimum: int | None, required: bool = False, default: int = 0
    ) -> int:
        if name not in self.record:
            if required:
                raise self.error(f"missing field '{name}'")
            return default
        value = self.record[name]
        if type(value) is not int or (minimum is not None and value < minimum):
            bound = "" if minimum is None else f" >= {minimum}"
            raise self.error(f"{name} must be an integer{bound}, got {json.dumps(value)}")
        return value

    def number(
        self, name: str, *, minimum: float, required: bool = False, default: float = 0.0
    ) -> float:
        if name not in self.record:
            if required:
                raise self.error(f"missing field '{name}'")
            return default
        return self._number(name, self.record[name], minimum)

    def _number(self, name: str, value: object, minimum: float) -> float:
        if type(value) not in (int, float) or not minimum <= value < float("inf"):
            raise self.error(f"{name} must be a finite number >= {minimum:g}, got {value}")
        return float(value)

    def deadline(self) -> float | None:
        value = self.record.get("deadline_s")
        if value is None:
            return None
        # A deadline at the arrival itself could never be met: it must lie after it.
        if type(value) not in (int, float) or not 0.0 < value < float("inf"):
            raise self.error(f"deadline_s must be a finite number of seconds > 0, got {json.dumps(value)}")
        return float(value)

    def spans(self, sequence_len: int) -> tuple[Span, ...]:
        raw = self.record.get("shared", [])
        if not isinstance(raw, list):
            raise self.error("shared must be a list of [key, start, length] lists")
        spans = []
        for item in raw:
            if (
                not isinstance(item, list)
                or len(item) != 3
                or any(type(x) is not int for x in item)
                or item[1] < 0
                or item[2] < 1
            ):
                raise self.error(
                    f"shared entries must be [key, start >= 0, length >= 1], got {json.dumps(item)}"
                )
            spans.append(Span(*item))
        covered = sum(span.length for span in spans)
        if covered > sequence_len:
            raise self.error(
                f"shared spans cover {covered} tokens, more than prompt_len + output_len"
                f" = {sequence_len}"
            )
        return tuple(spans)

    def token_ids(self, prompt_len: int) -> tuple[int, ...] | None:
        raw = self.record.get("prompt_token_ids")
        if raw is None:
            return None
        if not isinstance(raw, list) or any(type(x) is not int or x < 0 for x in raw):
            raise self.error("prompt_token_ids must be a list of integers >= 0")
        if len(raw) != prompt_len:
            raise self.error(f"prompt_token_ids has {len(raw)} ids but prompt_len is {prompt_len}")
        return tuple(raw)

    def slo(self) -> SLO | None:
        raw = self.record.get("slo")
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise self.error("slo must be an object with ttft_ms, tpot_ms and/or e2e_ms")
        for name in raw:
            if name not in _SLO_FIELDS:
                raise self.error(str(unknown_name_error("slo field", name, _SLO_FIELDS)))
        targets = {
            name: None if value is None else self._number(f"slo.{name}", value, 0.0)
            for name, value in raw.items()
        }
        return SLO(**targets)
