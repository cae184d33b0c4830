"""Kairos' real engine against Hugging Face transformers `generate` on the same weights.

A random-init preset is saved as a Hugging Face model directory, and both sides
load that directory. 64 seeded prompts of mixed lengths run greedily for a fixed
number of new tokens (EOS ignored) three ways: the Kairos engine (all prompts
submitted at once; continuous batching, paged KV), transformers one prompt at a
time, and transformers as one left-padded batch. Outputs are checked token for
token against the one-at-a-time reference, and output tokens/s is printed.

    .venv/bin/python benchmarks/engine_vs_hf.py [--model small] [--num-prompts 64] [--max-new-tokens 64]

Needs the `engine` and `hf-reference` extras (torch, safetensors, tokenizers, transformers).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from kairos.serve import EngineRunner, RunnerConfig, load_model, save_hf_checkpoint


def make_prompts(n: int, min_len: int, max_len: int, seed: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=gen).tolist()
    # Byte ids (0..255) are real tokens of the preset's tokenizer.
    return [torch.randint(0, 256, (length,), generator=gen).tolist() for length in lengths]


def run_kairos(model_dir: Path, prompts: list[list[int]], max_new: int) -> tuple[list[list[int]], float]:
    runner = EngineRunner(load_model(model_dir), RunnerConfig(ignore_eos=True))
    runner.generate(prompts[:2], max_tokens=2)  # warm-up: first-call allocations
    start = time.perf_counter()
    outs = runner.generate(prompts, max_tokens=max_new)
    return outs, time.perf_counter() - start


def run_hf_one_at_a_time(hf, prompts: list[list[int]], max_new: int) -> tuple[list[list[int]], float]:
    _hf_generate(hf, [prompts[0]], max_new=2)
    start = time.perf_counter()
    outs = [_hf_generate(hf, [p], max_new)[0] for p in prompts]
    return outs, time.perf_counter() - start


def run_hf_padded_batch(hf, prompts: list[list[int]], max_new: int) -> tuple[list[list[int]], float]:
    _hf_generate(hf, prompts[:2], max_new=2)
    start = time.perf_counter()
    outs = _hf_generate(hf, prompts, max_new)
    return outs, time.perf_counter() - start


def _hf_generate(hf, prompts: list[list[int]], max_new: int) -> list[list[int]]:
    """Greedy generation of a left-padded batch; returns the new tokens of each prompt."""
    width = max(len(p) for p in prompts)
    pad = 0
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.inference_mode():
        out = hf.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new,
                          min_new_tokens=None, pad_token_id=pad)
    return out[:, width:].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small", help="random-init preset (tiny, small, medium)")
    parser.add_argument("--num-prompts", type=int, default=64)
    parser.add_argument("--min-len", type=int, default=16)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    prompts = make_prompts(args.num_prompts, args.min_len, args.max_len, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        preset = load_model(args.model, seed=args.seed)
        save_hf_checkpoint(preset.model, model_dir, preset.tokenizer)
        hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        hf.generation_config.eos_token_id = None  # fixed-length outputs, as with ignore_eos
        kairos, t_kairos = run_kairos(model_dir, prompts, args.max_new_tokens)
    single, t_single = run_hf_one_at_a_time(hf, prompts, args.max_new_tokens)
    batch, t_batch = run_hf_padded_batch(hf, prompts, args.max_new_tokens)

    total = args.num_prompts * args.max_new_tokens
    print(f"model={args.model} prompts={args.num_prompts} prompt_len=[{args.min_len},{args.max_len}] "
          f"max_new_tokens={args.max_new_tokens} torch={torch.__version__} threads={torch.get_num_threads()}")
    print(f"{'method':<28}{'seconds':>9}{'out tok/s':>11}{'vs one-at-a-time':>18}  outputs")
    rows = [("kairos engine", t_kairos, kairos), ("hf generate, one at a time", t_single, single),
            ("hf generate, padded batch", t_batch, batch)]
    for name, secs, outs in rows:
        same = sum(o == r for o, r in zip(outs, single))
        print(f"{name:<28}{secs:>9.2f}{total / secs:>11.0f}{t_single / secs:>17.1f}x  "
              f"{same}/{len(single)} equal to one-at-a-time")
    if kairos != single:
        raise SystemExit("kairos outputs differ from the transformers reference")


if __name__ == "__main__":
    main()
