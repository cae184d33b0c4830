"""Decode step time with and without splitting attention groups by context length.

A batch of decodes whose contexts differ is padded to the longest one; splitting it
into groups of similar contexts saves padding but costs each group's kernel calls.
This times a bare EngineRunner's decode steps for a few context mixes, alternating
the old rule (split whenever 25 % of the padding is saved) and the current one (the
saving must also reach MIN_SPLIT_BYTES of K and V per layer), best of `--rounds`.

Usage: python benchmarks/attention_groups.py [--model tiny] [--rounds 3]   (needs the engine extra)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import kairos.serve.attention as attention
from kairos.serve import EngineRunner, RunnerConfig, load_model

MIXES = ([500, 500, 500], [300, 300, 900], [100, 400], [250, 250], [200] * 8 + [3000], [1000, 3000],
         [50] * 8 + [6000], [100] * 4 + [1500])


def median_step_ms(loaded, contexts: list[int], steps: int = 120) -> float:
    runner = EngineRunner(loaded, RunnerConfig(num_blocks=8192, max_num_seqs=64, max_num_batched_tokens=8192,
                                               ignore_eos=True))
    rng = np.random.default_rng(0)
    for length in contexts:
        runner.add(rng.integers(16, 500, length).tolist(), None, steps + 5)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        runner.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[20:])) * 1e3  # the first steps prefill


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded = load_model(args.model)
    current = dict(attention.MIN_SPLIT_BYTES)
    print("decodes  longest  split at 25 % (ms)  current rule (ms)")
    for contexts in MIXES:
        old, new = [], []
        for _ in range(args.rounds):  # alternate, so that a slow spell hits both
            attention.MIN_SPLIT_BYTES = {device: 0 for device in current}
            old.append(median_step_ms(loaded, contexts))
            attention.MIN_SPLIT_BYTES = current
            new.append(median_step_ms(loaded, contexts))
        print(f"{len(contexts):7d}  {max(contexts):7d}  {min(old):18.3f}  {min(new):17.3f}")


if __name__ == "__main__":
    main()
