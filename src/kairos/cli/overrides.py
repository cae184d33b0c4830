"""Command-line overrides shared by the commands that take a scenario."""

from __future__ import annotations

from typing import Any

import yaml

from kairos.errors import KairosError


def workload_override(value: str) -> dict[str, Any]:
    """`--workload synthetic|trace:PATH` as scenario overrides."""
    if value == "synthetic":
        return {"workload.kind": "synthetic", "workload.path": None}
    if value.startswith("trace:") and len(value) > len("trace:"):
        return {"workload.kind": "trace", "workload.path": value[len("trace:"):]}
    raise KairosError(f"--workload must be 'synthetic' or 'trace:PATH', got '{value}'")


def parse_set(items: list[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` items as dotted overrides; values are parsed as YAML (numbers, lists, maps)."""
    overrides = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise KairosError(f"--set expects KEY=VALUE (e.g. engine.block_size=32), got '{item}'")
        overrides[key.strip()] = yaml.safe_load(raw) if raw else None
    return overrides


def parse_options(items: list[str], option: str) -> dict[str, int | float | str]:
    """`--policy-option KEY=VALUE` items as knobs: each value an int, else a float, else a string."""
    options: dict[str, int | float | str] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise KairosError(f"{option} expects KEY=VALUE with a knob name as KEY (e.g. short_tokens=512), "
                              f"got '{item}'")
        options[key] = _number_or_text(raw.strip())
    return options


def _number_or_text(raw: str) -> int | float | str:
    for parse in (int, float):
        try:
            return parse(raw)
        except ValueError:
            pass
    return raw
