"""load_model: catalog names, Hugging Face ids, config.json paths and helpful errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kairos.errors import KairosError
from kairos.models import list_models, load_model

REQUIRED = {
    "llama-3.1-8b", "llama-3.1-70b", "llama-2-7b", "llama-2-70b", "codellama-34b",
    "qwen3-14b", "qwen3-32b", "qwen3-30b-a3b", "mixtral-8x7b",
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
