"""Write a Hugging Face model directory (config.json only) of a Kairos preset's shape, for vLLM.

Usage: python benchmarks/vllm_cpu/make_model.py PRESET OUT_DIR     (PRESET: tiny, small, medium)

The config comes from Kairos itself (`kairos.serve.loader.PRESETS[PRESET].to_hf()`), so vocabulary,
hidden/intermediate sizes, layers, heads, KV heads, head_dim, RoPE theta, max_position_embeddings,
tie_word_embeddings and the special token ids are exactly those of `kairos serve --model PRESET`.
torch_dtype is set to float32, the dtype Kairos's engine runs a preset in on CPU. There are no
weights and no tokenizer: serve it with `--load-format dummy --skip-tokenizer-init` (serve.sh does)
and send token-id prompts. Run it with Kairos's Python (it imports kairos and torch; falls back to
the repository's src/ when kairos is not installed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

try:
    from kairos.serve.loader import PRESETS
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from kairos.serve.loader import PRESETS

# The dtype Kairos's engine uses for a preset on CPU (loader._resolve_dtype with dtype=None).
KAIROS_CPU_DTYPE = "float32"


def preset_config(preset: str) -> dict[str, object]:
    """The config.json of a Kairos preset, with the dtype Kairos serves it in on CPU."""
    if preset not in PRESETS:
        raise SystemExit(f"unknown preset '{preset}': use one of {', '.join(PRESETS)}")
    hf = PRESETS[preset].to_hf()
    hf["torch_dtype"] = KAIROS_CPU_DTYPE
    return hf


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(f"usage: {Path(sys.argv[0]).name} PRESET OUT_DIR   (PRESET: {', '.join(PRESETS)})")
    preset, out = argv[0], Path(argv[1])
    config = preset_config(preset)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"{out}/config.json: preset {preset}, {config['num_hidden_layers']} layers, hidden {config['hidden_size']}")


if __name__ == "__main__":
    main(sys.argv[1:])
