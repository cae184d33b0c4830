"""How steady this machine's speed is: the same engine step, timed in 2-second windows.

A bare EngineRunner of the tiny model (one torch thread) decodes batches of 4
requests (200-token prompts, 200 output tokens) without pause; the median step
time of each 2-second window is printed, then the spread. On a machine whose
speed moves by more than a few percent between windows, a twin measured in one
window and checked in another cannot agree better than that.

Usage: python benchmarks/machine_speed.py [--seconds 60]   (needs `pip install -e '.[engine]'`)
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from kairos.serve import EngineRunner, RunnerConfig, load_model

WINDOW_S = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to measure")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runner = EngineRunner(load_model("tiny"), RunnerConfig(max_num_seqs=64, max_num_batched_tokens=512,
                                                           num_blocks=4096, ignore_eos=True))
    rng = np.random.default_rng(0)
    medians = []
    end = time.perf_counter() + args.seconds
    while time.perf_counter() < end:
        window_end = time.perf_counter() + WINDOW_S
        times = []
        while time.perf_counter() < window_end:
            if not runner.has_work():
                for _ in range(4):
                    runner.add(rng.integers(16, 512, 200).tolist(), max_tokens=200)
            start = time.perf_counter()
            runner.step()
            times.append(time.perf_counter() - start)
        medians.append(statistics.median(times) * 1e3)
    print("median step per window (ms): " + " ".join(f"{m:.2f}" for m in medians))
    mean = statistics.fmean(medians)
    spread = statistics.pstdev(medians) / mean * 100
    print(f"min {min(medians):.2f} ms, max {max(medians):.2f} ms, coefficient of variation {spread:.1f} %")


if __name__ == "__main__":
    main()
