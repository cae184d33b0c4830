"""Loading: HF configs of both generations, safetensors round trips (sharded too), tokenizers, KV sizing."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
pytest.importorskip("tokenizers")

from kairos.errors import KairosError  # noqa: E402
from kairos.serve import ModelConfig, load_model, num_blocks_for_memory, save_hf_checkpoint  # noqa: E402
from kairos.serve.kv_pool import kv_bytes_per_block  # noqa: E402
from kairos.serve.loader import PRESETS  # noqa: E402
from kairos.serve.tokenizer import ByteTokenizer  # noqa: E402

LLAMA31 = {
    "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0, "max_position_embeddings": 131072, "tie_word_embeddings": False,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "torch_dtype": "bfloat16",
}


def test_llama31_config():
    c = ModelConfig.from_hf(LLAMA31)
    assert (c.head_dim, c.num_kv_heads, c.eos_token_id) == (128, 8, 128001)
    assert c.rope_scaling["rope_type"] == "llama3" and c.rope_theta == 500000.0
    assert not c.qkv_bias and not c.o_bias


def test_transformers_v5_rope_parameters_read_like_v4():
    v5 = {k: v for k, v in LLAMA31.items() if k not in ("rope_theta", "rope_scaling")}
    v5["rope_parameters"] = {**LLAMA31["rope_scaling"], "rope_theta": 500000.0}
    assert ModelConfig.from_hf(v5) == ModelConfig.from_hf(LLAMA31)
    plain = {**v5, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}}
    assert ModelConfig.from_hf(plain).rope_scaling is None


def test_qwen2_config_has_qkv_bias_only():
    c = ModelConfig.from_hf({**LLAMA31, "model_type": "qwen2", "rope_scaling": None})
    assert c.qkv_bias and not c.o_bias


@pytest.mark.parametrize("change, message", [
    ({"model_type": "gpt2"}, "unsupported model_type"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "unsupported rope_scaling"),
    ({"num_key_value_heads": 5}, "multiple"),
])
def test_bad_configs_name_the_problem(change, message):
    with pytest.raises(KairosError, match=message):
        ModelConfig.from_hf({**LLAMA31, **change})


@pytest.mark.parametrize("max_shard_bytes", [None, 40_000])
def test_save_and_load_round_trip(tmp_path: Path, max_shard_bytes):
    tiny = load_model("tiny", seed=5)
    save_hf_checkpoint(tiny.model, tmp_path, tiny.tokenizer, max_shard_bytes=max_shard_bytes)
    if max_shard_bytes:
        assert (tmp_path / "model.safetensors.index.json").exists()
        assert len(list(tmp_path.glob("*.safetensors"))) > 1
    again = load_model(tmp_path)
    assert again.config == tiny.config
    a, b = dict(tiny.model.named_parameters()), dict(again.model.named_parameters())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    text = "naïve café, 日本 🎉"
    assert again.tokenizer.encode(text) == tiny.tokenizer.encode(text)
    assert again.tokenizer.decode(again.tokenizer.encode(text)) == text


def test_load_in_another_dtype(tmp_path: Path):
    tiny = load_model("tiny")
    save_hf_checkpoint(tiny.model, tmp_path, tiny.tokenizer)
    half = load_model(tmp_path, dtype="bfloat16")
    assert next(half.model.parameters()).dtype == torch.bfloat16
    assert half.model.inv_freq.dtype == torch.float32  # RoPE frequencies are never rounded


def test_missing_and_unexpected_weights_are_named(tmp_path: Path):
    from safetensors.torch import load_file, save_file

    tiny = load_model("tiny")
    save_hf_checkpoint(tiny.model, tmp_path, tiny.tokenizer)
    weights = load_file(tmp_path / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "layers.1.self_attn.k_proj" not in k},
              tmp_path / "model.safetensors")
    with pytest.raises(KairosError, match="layers.1.self_attn.qkv_proj"):
        load_model(tmp_path)
    save_file({**weights, "model.layers.0.self_attn.q_norm.weight": torch.ones(16)}, tmp_path / "model.safetensors")
    with pytest.raises(KairosError, match="unexpected weight 'model.layers.0.self_attn.q_norm.weight'"):
        load_model(tmp_path)


def test_unknown_model_name():
    with pytest.raises(KairosError, match="unknown model"):
        load_model("tinyy")


def test_byte_tokenizer_round_trip():
    tok = ByteTokenizer()
    ids = tok.encode("héllo\n")
    assert ids == [tok.bos_token_id, *"héllo\n".encode()]
    assert tok.decode(ids + [tok.eos_token_id, 400]) == "héllo\n"


def test_kv_pool_sizing():
    c = PRESETS["small"]
    per_block = kv_bytes_per_block(c, 16, torch.float32)
    assert per_block == 2 * c.num_layers * 16 * c.num_kv_heads * c.head_dim * 4
    assert num_blocks_for_memory(c, 16, 10 * per_block + 1, torch.float32) == 10
    assert num_blocks_for_memory(c, 16, 10 * per_block, torch.bfloat16) == 20


def test_exported_config_reads_back():
    for name, config in PRESETS.items():
        assert ModelConfig.from_hf(json.loads(json.dumps(config.to_hf()))) == config, name


def test_only_kairos_serve_imports_torch():
    src = Path(__file__).resolve().parents[1] / "src" / "kairos"
    heavy = {"torch", "transformers", "safetensors", "tokenizers"}
    for path in src.rglob("*.py"):
        if "serve" in path.relative_to(src).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in heavy for n in names), f"{path} imports {names}"
