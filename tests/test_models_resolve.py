"""resolve_model: Hugging Face variant names, aiconfigurator-core's configs and the Hub (mocked)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from kairos.errors import KairosError
from kairos.models import catalog, list_known_hf_ids, list_models, load_model, resolve_model

huggingface_hub = pytest.importorskip("huggingface_hub")
LocalEntryNotFoundError = pytest.importorskip("huggingface_hub.utils").LocalEntryNotFoundError

WAY_OUT = "download it and pass its path, --model path/to/config.json"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every Hub download fails (as offline) unless a test installs its own fake; calls are recorded."""
    calls: list[str] = []

    def offline(repo_id: str, filename: str) -> str:
        calls.append(repo_id)
        raise LocalEntryNotFoundError("cannot reach the Hub")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    return calls


@pytest.mark.parametrize(
    ("spelling", "name", "dtype", "suffix"),
    [
        ("Qwen/Qwen3-30B-A3B-Instruct-2507", "qwen3-30b-a3b", "bf16", "-Instruct-2507"),
        ("Qwen/Qwen3-235B-A22B-Thinking-2507", "qwen3-235b-a22b", "bf16", "-Thinking-2507"),
        ("Qwen/Qwen3-14B-FP8", "qwen3-14b", "fp8", "-FP8"),
        ("nvidia/Llama-3.1-8B-Instruct-FP8", "llama-3.1-8b", "fp8", "-FP8"),  # -Instruct is an alias
        ("Qwen/Qwen3-14B-AWQ", "qwen3-14b", "int4", "-AWQ"),
        ("Qwen/Qwen3-8B-GPTQ-Int4", "qwen3-8b", "int4", "-GPTQ-Int4"),
        ("RedHatAI/Meta-Llama-3.1-70B-Instruct-quantized.w4a16", "llama-3.1-70b", "int4", "-quantized.w4a16"),
        ("neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8-dynamic", "llama-3.1-8b", "fp8", "-FP8-dynamic"),
        ("openai/gpt-oss-120b-W4A16", "gpt-oss-120b", "int4", "-W4A16"),
        ("Qwen/Qwen3-8B-int4", "qwen3-8b", "int4", "-int4"),
        ("Qwen/Qwen3-8B-Base", "qwen3-8b", "bf16", "-Base"),
        ("meta-llama/Llama-3.2-1B-it", "llama-3.2-1b", "bf16", "-it"),
        ("Llama-2-7b-Chat", "llama-2-7b", "bf16", "-Chat"),
        ("mistralai/Mistral-7B-Instruct-v0.3", "mistral-7b", "bf16", "-Instruct-v0.3"),
        ("nvidia/DeepSeek-R1-NVFP4", "deepseek-r1", "nvfp4", "-NVFP4"),
    ],
)
def test_variant_names_resolve_to_the_base_architecture(spelling: str, name: str, dtype: str, suffix: str) -> None:
    resolved = resolve_model(spelling)
    assert resolved.arch.name == name
    assert resolved.arch.weights_dtype == dtype
    assert resolved.note is not None
    assert resolved.note.startswith(f"{spelling} resolved to catalog model {name} (same architecture; ")
    assert f"suffix '{suffix}'" in resolved.note
    assert ("weights " + dtype in resolved.note) == (dtype != load_model(name).weights_dtype)
    assert load_model(spelling) == resolved.arch


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("meta-llama/Llama-3.1-70B-Instruct", "llama-3.1-70b"),
        ("meta-llama/Meta-Llama-3.1-70B", "llama-3.1-70b"),
        ("Llama-2-70b-hf", "llama-2-70b"),
        ("mistralai/Mixtral-8x7B-v0.1", "mixtral-8x7b"),
        ("deepseek-ai/DeepSeek-R1-0528", "deepseek-r1"),
        ("gpt-oss-20b", "gpt-oss-20b"),
    ],
)
def test_exact_names_win_and_carry_no_note(spelling: str, name: str) -> None:
    resolved = resolve_model(spelling)
    assert (resolved.arch.name, resolved.note) == (name, None)


def test_meta_llama_prefix_and_foreign_org_are_ignored() -> None:
    resolved = resolve_model("someone/Meta-Llama-3.1-8B")
    assert resolved.arch == load_model("llama-3.1-8b")
    assert resolved.note == ("someone/Meta-Llama-3.1-8B resolved to catalog model llama-3.1-8b "
                             "(same architecture; as meta-llama/Llama-3.1-8B)")


def test_suffix_precision_replaces_the_base_checkpoints() -> None:
    assert load_model("deepseek-v3").weights_dtype == "fp8_block"
    assert load_model("deepseek-ai/DeepSeek-V3-Base").weights_dtype == "fp8_block"
    nvfp4 = load_model("nvidia/DeepSeek-V3-NVFP4")
    assert (nvfp4.weights_dtype, nvfp4.quant_scope) == ("nvfp4", "linear")


def test_an_unknown_name_without_org_keeps_the_close_match_error(no_network: list[str]) -> None:
    with pytest.raises(KairosError, match=r"unknown model 'qwen3-32bb-instruct': did you mean .*qwen3-32b"):
        load_model("qwen3-32bb-instruct")
    assert no_network == []


def test_aiconfigurator_configs_resolve_in_place() -> None:
    pytest.importorskip("aiconfigurator_core")
    assert "moonshotai/Kimi-K2-Instruct" in list_known_hf_ids()
    assert "Kimi-K2-Instruct" not in list_models()
    resolved = resolve_model("moonshotai/Kimi-K2-Instruct")
    assert (resolved.arch.name, resolved.arch.hf_id) == ("Kimi-K2-Instruct", "moonshotai/Kimi-K2-Instruct")
    assert resolved.arch.is_mla and resolved.arch.weights_dtype == "fp8_block"
    assert resolved.note is not None and "aiconfigurator-core" in resolved.note
    # ModelOpt checkpoints keep their quantization in hf_quant_config.json next to config.json.
    assert load_model("nvidia/DeepSeek-V3.1-NVFP4").weights_dtype == "nvfp4"
    variant = resolve_model("moonshotai/Kimi-K2-Instruct-0905")
    assert variant.arch.hf_id == "moonshotai/Kimi-K2-Instruct"
    assert variant.note is not None and "suffix '-0905'" in variant.note


def test_checkpoints_aiconfigurator_ships_win_over_stripped_catalog_names() -> None:
    pytest.importorskip("aiconfigurator_core")
    # The checkpoint's own config carries its quantization (scope and block scales).
    for spelling in ("nvidia/Qwen3-235B-A22B-NVFP4", "nvidia/Kimi-K2.5-NVFP4"):
        resolved = resolve_model(spelling)
        assert resolved.arch.hf_id == spelling and resolved.arch.weights_dtype == "nvfp4"
    for spelling in ("Qwen/Qwen3-235B-A22B-FP8", "Qwen/Qwen3-32B-FP8"):
        assert load_model(spelling).weights_dtype == "fp8_block"


def test_catalog_ids_are_known_without_aiconfigurator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog, "_aiconfigurator_ids", dict)
    monkeypatch.setattr(catalog, "_aiconfigurator_variant_keys", dict)
    known = list_known_hf_ids()
    assert {"openai/gpt-oss-120b", "meta-llama/Llama-3.1-70B-Instruct"} <= set(known)
    assert "moonshotai/Kimi-K2-Instruct" not in known
    assert load_model("Qwen/Qwen3-32B-FP8").name == "qwen3-32b"


def _fake_download(folder: Path, calls: list[str]):
    def download(repo_id: str, filename: str) -> str:
        calls.append(f"{repo_id}:{filename}")
        config = {
            "model_type": "qwen3", "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
            "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
            "max_position_embeddings": 40960, "tie_word_embeddings": True,
        }
        path = folder / repo_id.replace("/", "--") / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config))
        return str(path)

    return download


def test_unknown_repo_id_fetches_only_its_config_from_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _fake_download(tmp_path, calls))
    resolved = resolve_model("acme/Tiny-0.6B")
    assert calls == ["acme/Tiny-0.6B:config.json"]
    assert (resolved.arch.name, resolved.arch.hf_id) == ("Tiny-0.6B", "acme/Tiny-0.6B")
    assert resolved.arch.num_params == load_model("qwen3-0.6b").num_params
    assert resolved.note == "fetched config.json of acme/Tiny-0.6B from the Hugging Face Hub"
    # A fetched config without quantization_config takes the precision its name implies.
    assert load_model("acme/Tiny-0.6B-NVFP4").weights_dtype == "nvfp4"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (LocalEntryNotFoundError("cannot reach the Hub"),
         "offline, and not in the local Hugging Face cache"),
        (OSError("connection reset by peer"), "OSError: connection reset by peer"),
    ],
)
def test_hub_failure_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, error: Exception, reason: str) -> None:
    def failing(repo_id: str, filename: str) -> str:
        raise error

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", failing)
    with pytest.raises(KairosError) as err:
        load_model("acme/Unknown-Model")
    assert str(err.value) == (
        f"cannot fetch config.json of acme/Unknown-Model from the Hugging Face Hub ({reason}): {WAY_OUT}"
    )


def test_without_huggingface_hub_the_error_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    expected = r"unknown model 'acme/Unknown-Model': .*pip install huggingface_hub.*config\.json"
    with pytest.raises(KairosError, match=expected):
        load_model("acme/Unknown-Model")
