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
