"""load_model: catalog names, Hugging Face ids, config.json paths and helpful errors."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from kairos.errors import KairosError
from kairos.models import list_models, load_model

REQUIRED = {
    "llama-3.1-8b", "llama-3.1-70b", "llama-2-7b", "llama-2-70b", "codellama-34b",
    "qwen3-14b", "qwen3-32b", "qwen3-30b-a3b", "mixtral-8x7b", "llama-3.1-405b", "qwen3-235b-a22b",
    "gpt-oss-20b", "gpt-oss-120b", "minimax-m2.5", "kimi-k2.5", "deepseek-v3", "deepseek-r1",
}


def test_catalog_holds_the_required_models() -> None:
    assert REQUIRED <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_every_catalog_entry_loads(name: str) -> None:
    model = load_model(name)
    assert model.name == name
    assert model.hf_id
    assert model.num_params > 0 and model.kv_bytes_per_token > 0


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("LLAMA-3.1-8B", "llama-3.1-8b"),
        ("meta-llama/Llama-3.1-8B", "llama-3.1-8b"),
        ("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama-3.1-8b"),
        ("Llama-3.1-70B-Instruct", "llama-3.1-70b"),
        ("Qwen/Qwen3-14B", "qwen3-14b"),
        ("Qwen/Qwen3-30B-A3B", "qwen3-30b-a3b"),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b"),
        ("codellama/CodeLlama-34b-Instruct-hf", "codellama-34b"),
    ],
)
def test_hugging_face_ids_resolve_to_catalog_names(spelling: str, name: str) -> None:
    assert load_model(spelling).name == name


def _write_config(folder: Path) -> Path:
    folder.mkdir(parents=True)
    config = {
        "model_type": "qwen3", "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
        "max_position_embeddings": 40960, "tie_word_embeddings": True, "_name_or_path": "Qwen/Qwen3-0.6B",
    }
    path = folder / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_config_json_path_and_its_folder_load(tmp_path: Path) -> None:
    path = _write_config(tmp_path / "My-Checkpoint")
    from_file = load_model(str(path))
    from_folder = load_model(str(path.parent))
    assert from_file == from_folder
    assert from_file.name == "My-Checkpoint"
    assert from_file.hf_id == "Qwen/Qwen3-0.6B"
    assert from_file.num_params == load_model("qwen3-0.6b").num_params


def test_bad_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(KairosError, match="config.json"):
        load_model(str(path))


def test_folder_without_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KairosError, match="no model config"):
        load_model(str(tmp_path))


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(KairosError, match=r"unknown model 'llama-3.1-8bb': did you mean .*llama-3.1-8b"):
        load_model("llama-3.1-8bb")


COPIED_FROM_AICONFIGURATOR = {
    "llama-3.1-405b": "meta-llama--Meta-Llama-3.1-405B", "qwen3-235b-a22b": "Qwen--Qwen3-235B-A22B",
    "gpt-oss-20b": "openai--gpt-oss-20b", "gpt-oss-120b": "openai--gpt-oss-120b",
    "minimax-m2.5": "MiniMaxAI--MiniMax-M2.5", "kimi-k2.5": "moonshotai--Kimi-K2.5",
    "deepseek-v3": "deepseek-ai--DeepSeek-V3", "deepseek-r1": "deepseek-ai--DeepSeek-R1",
}


def _is_subset(kept: object, source: object) -> bool:
    if isinstance(kept, dict):
        return isinstance(source, dict) and all(k in source and _is_subset(v, source[k]) for k, v in kept.items())
    return kept == source


@pytest.mark.parametrize(("name", "stem"), sorted(COPIED_FROM_AICONFIGURATOR.items()))
def test_new_entries_are_copied_field_for_field(name: str, stem: str) -> None:
    pytest.importorskip("aiconfigurator_core")
    source = json.loads((resources.files("aiconfigurator_core") / "model_configs" / f"{stem}_config.json").read_text())
    entry = json.loads((resources.files("kairos.models") / "catalog" / f"{name}.json").read_text())
    assert _is_subset(entry["config"], source)
