"""A measured run's engine steps: `engine_steps.jsonl`, every step a Kairos server took while serving the run.

`kairos bench` writes it when the server is `kairos serve` (from GET /kairos/steps):
one JSON object per engine step, as the server logs it: `prefill_new` and
`prefill_ctx` (one entry per prefill chunk), `num_decodes`, `decode_kv_sum`,
`num_sampled`, `decode_kv_max` (the decodes' longest KV length), `seconds`
(the engine loop's time for the step), `idle_s` (how long the engine sat
idle before it), `reference_s` (the server's reference step then: the
machine's speed; 0 where the server does not time it) and `start_s` (when
the step started, on the monotonic clock of the requests' `*_ts` stamps).
`kairos validate` predicts each of these steps with its step-time model and
reports the error beside the latency errors: where the steps themselves ran
slower or faster than the model says, the twin's TPOT is off by about as
much, whatever its scheduling gets right.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kairos.calibration.profile import MeasuredPoint, finite_number
from kairos.engine.batch_shape import BatchShape
from kairos.errors import KairosError
from kairos.workload.tracefile import parse_jsonl

STEPS_FILE = "engine_steps.jsonl"
STEPS_PATH = "/kairos/steps"  # where `kairos serve` exposes its step log
ENGINE_PATH = "/kairos/engine"  # its engine settings; other servers answer 404
# The log past any step it will ever number: its answer holds the next number and no entries.
STEPS_COUNT_PATH = f"{STEPS_PATH}?since={2**62}"
STEP_KEYS: tuple[str, ...] = ("prefill_new", "prefill_ctx", "num_decodes", "decode_kv_sum", "num_sampled",
                              "decode_kv_max", "seconds", "idle_s", "reference_s", "start_s")


def step_point(obj: Any, where: str) -> MeasuredPoint:
    """One logged step as a measured point; a KairosError naming `where` if it is malformed."""
    if not isinstance(obj, dict):
        raise KairosError(f"{where}: a step must be a JSON object")
    chunks = []
    for key in ("prefill_new", "prefill_ctx"):
        value = obj.get(key)
        if not isinstance(value, list) or not all(_is_count(n) for n in value):
            raise KairosError(f"{where}: '{key}' must be a list of integers >= 0")
        chunks.append(tuple(value))
    if len(chunks[0]) != len(chunks[1]):
        raise KairosError(f"{where}: 'prefill_new' and 'prefill_ctx' must have the same length")
    counts = []
    for key in ("num_decodes", "decode_kv_sum", "num_sampled", "decode_kv_max"):
        value = obj.get(key, 0 if key == "decode_kv_max" else None)  # logs before it had no decode_kv_max
        if not _is_count(value):
            raise KairosError(f"{where}: '{key}' must be an integer >= 0, got {value!r}")
        counts.append(value)
    seconds = obj.get("seconds")
    if not finite_number(seconds) or seconds <= 0:
        raise KairosError(f"{where}: 'seconds' must be a number > 0, got {seconds!r}")
    for key in ("idle_s", "reference_s", "start_s"):  # optional: older logs lack them
        value = obj.get(key, 0.0)
        if not finite_number(value) or value < 0:
            raise KairosError(f"{where}: '{key}' must be a number >= 0, got {value!r}")
    shape = BatchShape(chunks[0], chunks[1], *counts)
    return MeasuredPoint("served", shape, float(seconds), (float(seconds),), float(obj.get("idle_s", 0.0)),
                         float(obj.get("reference_s", 0.0)), float(obj.get("start_s", 0.0)))


def write_engine_steps(run_dir: str | Path, steps: Sequence[dict[str, Any]]) -> Path | None:
    """Write `steps` (server step-log entries) as engine_steps.jsonl; with none, remove a stale file."""
    path = Path(run_dir) / STEPS_FILE
    path.unlink(missing_ok=True)
    if not steps:
        return None
    with path.open("w", encoding="utf-8") as handle:
        for step in steps:
            handle.write(json.dumps({key: step[key] for key in STEP_KEYS if key in step}, allow_nan=False) + "\n")
    return path


def read_engine_steps(path: Path) -> list[MeasuredPoint]:
    """Every step of an engine_steps.jsonl; malformed lines are a KairosError "FILE:LINE: ..."."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KairosError(f"{path}: cannot read: {exc}") from None
    records, numbers = parse_jsonl(text, path)
    return [step_point(record, f"{path}:{number}") for record, number in zip(records, numbers)]


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
