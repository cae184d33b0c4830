"""Reading a scenario: YAML file or the built-in default, command-line overrides, validation."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kairos.errors import KairosError
from kairos.scenario.schema import Scenario

DEFAULT_SCENARIO = "default.yaml"
# Sections that may be written as a bare string, and the field that string sets.
SHORTHAND_FIELD = {"model": "name", "perf": "model"}


def read_scenario_dict(path: str | Path | None) -> tuple[dict[str, Any], str]:
    """The raw mapping of a scenario file (the built-in default when `path` is None) and its name."""
    if path is None:
        text = resources.files("kairos.scenario").joinpath(DEFAULT_SCENARIO).read_text()
        source = "built-in scenario"
    else:
        source = str(path)
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            raise KairosError(f"{path}: no such scenario file") from None
        except OSError as exc:
            raise KairosError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise KairosError(f"{source}{where}: invalid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise KairosError(f"{source}: a scenario must be a mapping of sections, got {type(data).__name__}")
    return data, source


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys (`engine.max_num_seqs`) in a copy of a nested mapping."""
    merged = _deep_copy(data)
    for dotted, value in overrides.items():
        node = merged
        *parents, leaf = dotted.split(".")
        for key in parents:
            child = node.get(key)
            if isinstance(child, str) and key in SHORTHAND_FIELD:
                child = {SHORTHAND_FIELD[key]: child}
            if not isinstance(child, dict):
                child = {}
            node[key] = child
            node = child
        node[leaf] = value
    return merged


def validate_scenario(data: dict[str, Any], source: str) -> Scenario:
    """A Scenario, or a KairosError naming the first bad field in one line."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-")) or "scenario"
        if first["type"] == "extra_forbidden":
            message = f"unknown key '{where}'"
        else:
            message = f"{where}: {first['msg']}"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise KairosError(f"{source}: {message}{more}") from None


def load_scenario(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Scenario:
    data, source = read_scenario_dict(path)
    return validate_scenario(apply_overrides(data, overrides or {}), source)


def _deep_copy(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _deep_copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_deep_copy(v) for v in node]
    return node
