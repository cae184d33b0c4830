"""The calibration profile file: its schema (`Profile`), reading and checking it, and its measured points."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from kairos.calibration.terms import ATTENTION_KINDS, PADDED, RETIRED_TERMS, TERMS
from kairos.engine.batch_shape import BatchShape
from kairos.errors import KairosError

SCHEMA = "kairos.calibration/v2"
# v1 had no engine.attention: every v1 profile was fitted on padded attention terms.
V1_SCHEMA = "kairos.calibration/v1"


def finite_number(value: Any) -> bool:
    """Whether a JSON value is a finite number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Each check sees the raw JSON value, so that nothing is coerced ("1" or true for a number), and
# words its own error: the file is named and the field's place put in front of it (_one_line).
def _number(least: float, inclusive: bool) -> BeforeValidator:
    bound = f"{'>=' if inclusive else '>'} {least:g}"

    def check(value: Any) -> float:
        if not finite_number(value) or value < least or (not inclusive and value == least):
            raise ValueError(f"must be a finite number {bound}, got {value!r}")
        return float(value)
    return BeforeValidator(check)


def _integer(least: int) -> BeforeValidator:
    def check(value: Any) -> int | None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ValueError(f"must be an integer >= {least}, got {value!r}")
        return value
    return BeforeValidator(check)


def _of_type(kind: type) -> BeforeValidator:
    def check(value: Any) -> Any:
        if not isinstance(value, kind):
            raise ValueError(f"is missing or not a {kind.__name__}")
        return value
    return BeforeValidator(check)


def _attention(value: Any) -> str:
    if value not in ATTENTION_KINDS:
        raise ValueError(f"must be one of {', '.join(ATTENTION_KINDS)}, got {value!r}")
    return value


def _object(value: Any) -> Any:
    if not isinstance(value, dict):
        raise ValueError("must be an object")
    return value


class EngineSettings(BaseModel):
    """The measured engine's limits; what the attention terms depend on is checked, the rest kept."""

    model_config = ConfigDict(extra="allow")

    attention: Annotated[str, BeforeValidator(_attention)] = PADDED
    block_size: Annotated[int | None, _integer(1)] = None
    attention_min_split_slots: Annotated[int | None, _integer(0)] = None


class MachineSpeedRecord(BaseModel):
    """The reference step time the profile was measured at (kairos.calibration.machine_speed)."""

    model_config = ConfigDict(extra="allow")

    reference_step_s: Annotated[float, _number(0.0, inclusive=False)] = Field(None, validate_default=True)


def _speed_record(value: Any) -> Any:
    # Anything but an object has no reading: say so as the reading's error.
    return value if isinstance(value, dict) else {}


class Profile(BaseModel):
    """A calibration profile as `kairos calibrate` writes it (schema SCHEMA).

    `hf_config` is the file's `model_config` (the measured model's HF-style config).
    Keys beyond the fields (device, measurement, points, fit errors) are kept as they are.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True, protected_namespaces=())

    schema_: str = Field(alias="schema")
    model: Annotated[str, _of_type(str)]
    hf_config: Annotated[dict[str, Any], _of_type(dict)] = Field(alias="model_config")
    terms: Annotated[list[str], _of_type(list)]
    coefficients: Annotated[dict[str, Any], _of_type(dict)]
    idle_time_constant_s: Annotated[float, _number(0.0, inclusive=True)] = 0.0
    request_latency_s: Annotated[float, _number(0.0, inclusive=True)] = 0.0
    request_latency_per_input_token_s: Annotated[float, _number(0.0, inclusive=True)] = 0.0
    engine: Annotated[EngineSettings, BeforeValidator(_object)] = EngineSettings()
    machine_speed: Annotated[MachineSpeedRecord | None, BeforeValidator(_speed_record)] = None

    @model_validator(mode="after")
    def _known_terms(self) -> Profile:
        unknown = [t for t in self.terms if t not in TERMS]
        if any(t in RETIRED_TERMS for t in unknown):
            raise ValueError(f"written by an older `kairos calibrate` (term {unknown[0]!r} is retired): "
                             "calibrate again")
        if unknown:
            raise ValueError(f"unknown term {unknown[0]!r} (known: {', '.join(TERMS)})")
        for term in self.terms:
            value = self.coefficients.get(term)
            if not finite_number(value) or value < 0:
                raise ValueError(f"coefficient of '{term}' must be a finite number >= 0, got {value!r}")
        return self

    @classmethod
    def read(cls, data: Any, source: str = "calibration profile") -> Profile:
        """Check `data` (a parsed profile file; v1 converted) or raise a one-line KairosError naming `source`."""
        if not isinstance(data, dict):
            raise KairosError(f"{source}: not a JSON object")
        if data.get("schema") == V1_SCHEMA:
            data = upgrade_v1(data)
        if data.get("schema") != SCHEMA:
            raise KairosError(f"{source}: schema is {data.get('schema')!r}, expected '{SCHEMA}' "
                              "(not a profile from `kairos calibrate`?)")
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise KairosError(f"{source}: {_one_line(err)}") from None

    def coefficient(self, term: str) -> float:
        """Seconds per unit of `term`; a term the profile does not list counts zero."""
        return float(self.coefficients[term]) if term in self.terms else 0.0

    def document(self) -> dict[str, Any]:
        """The profile as its JSON file holds it (what was read, v1 files converted)."""
        return self.model_dump(by_alias=True, exclude_unset=True)


def upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A v1 profile as v2: its attention terms were counted as padded batches."""
    engine = data.get("engine", {})
    if isinstance(engine, dict):
        engine = {**engine, "attention": PADDED}
    return {**data, "schema": SCHEMA, "engine": engine}


def _one_line(err: ValidationError) -> str:
    """The first error of a validation, as `'field' message` (nested fields dotted)."""
    first = err.errors()[0]
    loc = [str(part) for part in first["loc"]]
    if first["type"] == "value_error":
        message = str(first["ctx"]["error"])
    elif first["type"] == "missing":
        message = "is missing"
    else:
        message = f"{first['msg'].lower()}, got {first.get('input')!r}"
    if not loc:
        return message
    where = f"'{loc[0]}'" if len(loc) == 1 else ".".join(loc)
    return f"{where} {message}"


def load_profile(path: str | Path) -> dict[str, Any]:
    """Read and check a calibration profile written by `kairos calibrate`: its document (v1 files converted)."""
    return read_profile(path).document()


def read_profile(path: str | Path) -> Profile:
    """Read and check a calibration profile file; KairosError naming the file unless it is a usable one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise KairosError(f"{path}: no such calibration profile (write one with `kairos calibrate`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise KairosError(f"{path}: cannot read calibration profile: {err}") from err
    return Profile.read(data, str(path))


def check_profile(data: Any, source: str = "calibration profile") -> Profile:
    """The profile `data` holds; KairosError naming `source` unless it is a usable one."""
    return Profile.read(data, source)


@dataclass(frozen=True, slots=True)
class MeasuredPoint:
    """One measured step: its shape and the median of its repeated times.

    `idle_s`: how long the engine sat idle right before the step (0 inside a busy spell);
    `reference_s`: the server's reference step then, the machine's speed (0: not measured);
    `start_s`: when a served step started, on the server's monotonic clock (0: not logged;
    profiles do not keep it).
    """

    kind: str  # "prefill", "decode", "mixed", "served" (a logged step) or a probe's own kind
    shape: BatchShape
    time_s: float
    times_s: tuple[float, ...]
    idle_s: float = 0.0
    reference_s: float = 0.0
    start_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        s = self.shape
        return {"kind": self.kind, "prefill_new": list(s.prefill_new), "prefill_ctx": list(s.prefill_ctx),
                "num_decodes": s.num_decodes, "decode_kv_sum": s.decode_kv_sum,
                "num_sampled": s.num_sampled, "decode_kv_max": s.decode_kv_max, "time_s": self.time_s,
                "times_s": list(self.times_s), "idle_s": self.idle_s, "reference_s": self.reference_s}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasuredPoint:
        shape = BatchShape(tuple(int(n) for n in data["prefill_new"]),
                           tuple(int(c) for c in data["prefill_ctx"]),
                           int(data["num_decodes"]), int(data["decode_kv_sum"]), int(data["num_sampled"]),
                           int(data.get("decode_kv_max", 0)))
        return cls(str(data["kind"]), shape, float(data["time_s"]), tuple(float(t) for t in data["times_s"]),
                   float(data.get("idle_s", 0.0)), float(data.get("reference_s", 0.0)))
