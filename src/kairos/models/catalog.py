"""The bundled model catalog and `load_model`: by catalog name, Hugging Face id or config path."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from kairos.errors import KairosError, unknown_name_error
from kairos.models.arch import ModelArch


@cache
def _catalog() -> dict[str, dict[str, Any]]:
    """Catalog name -> {"hf_id", "hf_aliases", "config"} from the bundled JSON files."""
    folder = resources.files("kairos.models") / "catalog"
    entries = {}
    for item in folder.iterdir():
        if item.name.endswith(".json"):
            entries[item.name.removesuffix(".json")] = json.loads(item.read_text())
    return entries


@cache
def _lookup_keys() -> dict[str, str]:
    """Every accepted spelling (lower case) -> catalog name.

    Hugging Face ids are accepted with or without their organisation prefix, and
    fine-tuned variants listed in `hf_aliases` (instruct/chat) share the base
    architecture.
    """
    keys = {}
    for name, entry in _catalog().items():
        keys[name] = name
        for hf_id in [entry["hf_id"], *entry["hf_aliases"]]:
            keys[hf_id.lower()] = name
            keys[hf_id.lower().split("/")[-1]] = name
    return keys


def list_models() -> list[str]:
    """Catalog names, sorted."""
    return sorted(_catalog())


def load_model(name_or_path: str) -> ModelArch:
    """Resolve a catalog name, a Hugging Face id, a config.json path or a folder holding one."""
    name = _lookup_keys().get(name_or_path.lower())
    if name is not None:
        entry = _catalog()[name]
        return ModelArch.from_hf_config(entry["config"], name=name, hf_id=entry["hf_id"])
    path = Path(name_or_path).expanduser()
    if name_or_path and (path.exists() or name_or_path.endswith(".json")):
        return _load_config_path(path)
    raise unknown_name_error("model", name_or_path, list_models())


def _load_config_path(path: Path) -> ModelArch:
    config_path = path / "config.json" if path.is_dir() else path
    if not config_path.is_file():
        raise KairosError(f"no model config at {config_path}")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise KairosError(f"cannot read model config {config_path}: {err}") from err
    if not isinstance(config, dict):
        raise KairosError(f"model config {config_path} is not a JSON object")
    # A config.json is named after the folder that holds the checkpoint.
    name = config_path.parent.name if config_path.name == "config.json" else config_path.stem
    return ModelArch.from_hf_config(config, name=name, hf_id=str(config.get("_name_or_path", "")))
