"""Model resolution: catalog names, Hugging Face ids and their variants, config.json paths, the Hub."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from kairos.errors import KairosError, unknown_name_error
from kairos.models.arch import ModelArch
from kairos.models.hub import fetch_config, looks_like_repo_id
from kairos.models.precision import UNQUANTIZED
from kairos.models.variants import Variant, implied_weights_dtype, normalize, variants

AICONFIGURATOR = "aiconfigurator-core's model configs"


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """An architecture and, when the name was not an exact catalog match, how it was reached."""

    arch: ModelArch
    note: str | None = None


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
    """Every exactly accepted spelling (lower case) -> catalog name.

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


@cache
def _variant_keys() -> dict[str, str]:
    """Normalized catalog names, ids and aliases -> catalog name, for names with suffixes stripped."""
    keys: dict[str, str] = {}
    for name, entry in _catalog().items():
        for spelling in [name, entry["hf_id"], *entry["hf_aliases"]]:
            keys.setdefault(normalize(spelling), name)
    return keys


def aiconfigurator_model_configs() -> Traversable | None:
    """aiconfigurator-core's model_configs folder, when the `kernels` extra is installed."""
    try:
        folder = resources.files("aiconfigurator_core") / "model_configs"
    except ModuleNotFoundError:
        return None
    return folder if folder.is_dir() else None


@cache
def _aiconfigurator_ids() -> dict[str, str]:
    """Lower-case Hugging Face id -> id of every `<org>--<name>_config.json` aiconfigurator-core ships."""
    folder = aiconfigurator_model_configs()
    ids = {}
    for item in folder.iterdir() if folder else []:
        stem = item.name.removesuffix("_config.json")
        if stem != item.name and not stem.endswith("_hf_quant") and "--" in stem:
            hf_id = stem.replace("--", "/", 1)
            ids[hf_id.lower()] = hf_id
    return ids


@cache
def _aiconfigurator_variant_keys() -> dict[str, str]:
    keys: dict[str, str] = {}
    for hf_id in sorted(_aiconfigurator_ids().values()):
        keys.setdefault(normalize(hf_id), hf_id)
    return keys


def list_models() -> list[str]:
    """Bundled catalog names, sorted."""
    return sorted(_catalog())


def list_known_hf_ids() -> list[str]:
    """Hugging Face ids resolvable without the Hub: the catalog's ids and aliases, and aiconfigurator-core's."""
    ids = {hf_id for entry in _catalog().values() for hf_id in [entry["hf_id"], *entry["hf_aliases"]]}
    return sorted(ids | set(_aiconfigurator_ids().values()))


def load_model(name_or_path: str) -> ModelArch:
    """Resolve a model name to its architecture (see `resolve_model`)."""
    return resolve_model(name_or_path).arch


def resolve_model(name_or_path: str) -> ResolvedModel:
    """Resolve a catalog name, a Hugging Face id (variants included), a config.json path or a folder holding one.

    In order: an exact catalog name, id or alias; a path; an id aiconfigurator-core
    ships the config of (the checkpoint's own, quantization included) when the
    `kernels` extra is installed; the catalog after stripping variant suffixes one at
    a time (-Instruct, -2507, -FP8...; the organisation is ignored); aiconfigurator-core's
    configs after stripping; the Hub for an org/name id when huggingface_hub is.
    A quantization suffix (-FP8, -NVFP4, -AWQ...) sets the weights dtype.
    """
    name = name_or_path
    exact = _lookup_keys().get(name.lower())
    if exact is not None:
        return ResolvedModel(_catalog_arch(exact))
    path = Path(name).expanduser()
    if name and (path.exists() or name.endswith(".json")):
        return ResolvedModel(_load_config_path(path))
    resolved = _aiconfigurator_exact(name) or _catalog_variant(name) or _aiconfigurator_variant(name)
    if resolved is not None:
        return resolved
    if looks_like_repo_id(name):
        arch = ModelArch.from_hf_config(_read_config(fetch_config(name)), name=name.split("/")[-1], hf_id=name)
        return ResolvedModel(_implied_precision(name, arch), f"fetched config.json of {name} from the Hugging Face Hub")
    raise unknown_name_error("model", name, list_models())


def _catalog_variant(name: str) -> ResolvedModel | None:
    for variant in variants(name):
        catalog_name = _variant_keys().get(variant.key)
        if catalog_name is not None:
            entry = _catalog()[catalog_name]
            return _variant_of(name, _catalog_arch(catalog_name), variant, f"catalog model {catalog_name}",
                               entry["hf_id"])
    return None


def _aiconfigurator_exact(name: str) -> ResolvedModel | None:
    hf_id = _aiconfigurator_ids().get(name.lower())
    if hf_id is None:
        return None
    arch = _implied_precision(name, _aiconfigurator_arch(hf_id))
    return ResolvedModel(arch, f"read config.json of {hf_id} from {AICONFIGURATOR}")


def _aiconfigurator_variant(name: str) -> ResolvedModel | None:
    for variant in variants(name):
        hf_id = _aiconfigurator_variant_keys().get(variant.key)
        if hf_id is not None:
            return _variant_of(name, _aiconfigurator_arch(hf_id), variant, f"{hf_id} from {AICONFIGURATOR}", hf_id)
    return None


def _variant_of(name: str, arch: ModelArch, variant: Variant, source: str, base_id: str) -> ResolvedModel:
    """`arch` in the precision `variant`'s suffix implies, with a note on how `name` reached `source`."""
    detail = f"suffix '{variant.suffix}'" if variant.suffix else f"as {base_id}"
    dtype = variant.weights_dtype
    if dtype is not None and dtype != arch.weights_dtype:
        arch = arch.with_precision(dtype)
        detail += f"; weights {dtype}"
    return ResolvedModel(arch, f"{name} resolved to {source} (same architecture; {detail})")


def _implied_precision(name: str, arch: ModelArch) -> ModelArch:
    """A config that does not say it is quantized takes the precision its name's suffix implies."""
    dtype = implied_weights_dtype(name)
    if dtype is not None and arch.weights_dtype in UNQUANTIZED:
        return arch.with_precision(dtype)
    return arch


def _catalog_arch(name: str) -> ModelArch:
    entry = _catalog()[name]
    return ModelArch.from_hf_config(entry["config"], name=name, hf_id=entry["hf_id"])


def _aiconfigurator_arch(hf_id: str) -> ModelArch:
    """The architecture from aiconfigurator-core's config of `hf_id`, read in place from the package.

    NVIDIA ModelOpt checkpoints keep their quantization in a separate
    hf_quant_config.json (as vLLM reads it); it is merged in when config.json has none.
    """
    folder = aiconfigurator_model_configs()
    assert folder is not None  # only ids listed from the folder get here
    stem = hf_id.replace("/", "--", 1)
    config = json.loads((folder / f"{stem}_config.json").read_text())
    quant_file = folder / f"{stem}_hf_quant_config.json"
    if "quantization_config" not in config and quant_file.is_file():
        quantization = json.loads(quant_file.read_text()).get("quantization") or {}
        config["quantization_config"] = {"quant_method": "modelopt", **quantization}
    return ModelArch.from_hf_config(config, name=hf_id.split("/")[-1], hf_id=hf_id)


def _load_config_path(path: Path) -> ModelArch:
    config_path = path / "config.json" if path.is_dir() else path
    config = _read_config(config_path)
    # A config.json is named after the folder that holds the checkpoint.
    name = config_path.parent.name if config_path.name == "config.json" else config_path.stem
    return ModelArch.from_hf_config(config, name=name, hf_id=str(config.get("_name_or_path", "")))


def _read_config(config_path: Path) -> dict[str, Any]:
    if not config_path.is_file():
        raise KairosError(f"no model config at {config_path}")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise KairosError(f"cannot read model config {config_path}: {err}") from err
    if not isinstance(config, dict):
        raise KairosError(f"model config {config_path} is not a JSON object")
    return config


def catalog_config(name: str) -> dict[str, Any] | None:
    """The bundled Hugging Face config of catalog model `name` (None for other names)."""
    entry = _catalog().get(name)
    return entry["config"] if entry is not None else None


def hf_id_for(name: str) -> str | None:
    """The Hugging Face id a model name serves as (`vllm serve ID`), where the catalog or the name says it."""
    entry = _catalog().get(_lookup_keys().get(name.strip().lower(), ""))
    if entry is not None:
        return entry["hf_id"]
    return name if looks_like_repo_id(name) else None
