"""How much slower the first engine step after an idle gap is, by gap length (CPU, tiny model).

A bare EngineRunner of the tiny model (one torch thread) serves one request at a
time: a 48-token prompt, then 7 decodes. Between requests the loop waits `gap`
milliseconds, spinning on the clock or sleeping; the median time of the prefill
step, of the first decode after it and of the later decodes is printed per gap.
What `kairos calibrate --url` fits as the idle_wake term.

Usage: python benchmarks/idle_wake.py [--requests 60]   (needs `pip install -e '.[engine]'`)
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from kairos.serve import EngineRunner, RunnerConfig, load_model

GAPS_MS = (0.0, 0.5, 1.0, 3.0, 10.0, 30.0, 100.0)


def spin(seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


def timed_step(runner: EngineRunner) -> float:
    start = time.perf_counter()
    runner.step()
    return time.perf_counter() - start


def measure(runner: EngineRunner, rng: np.random.Generator, gap_s: float, wait, requests: int
            ) -> tuple[float, float, float]:
    prefill, first_decode, later = [], [], []
    for _ in range(requests):
        runner.add(rng.integers(16, 512, 48).tolist(), max_tokens=8)
        prefill.append(timed_step(runner))
        first_decode.append(timed_step(runner))
        later.extend(timed_step(runner) for _ in range(6))
        if gap_s:
            wait(gap_s)
    return statistics.median(prefill), statistics.median(first_decode), statistics.median(later)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60, help="requests per gap length")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runner = EngineRunner(load_model("tiny"), RunnerConfig(max_num_seqs=64, max_num_batched_tokens=512,
                                                           num_blocks=4096, ignore_eos=True))
    rng = np.random.default_rng(0)
    measure(runner, rng, 0.0, spin, 10)  # warm-up
    print("| gap | wait | prefill (48 tokens) | first decode | later decodes |")
    print("|---:|---|---:|---:|---:|")
    for gap_ms in GAPS_MS:
        for name, wait in (("spin", spin), ("sleep", time.sleep)):
            if gap_ms == 0 and name == "sleep":
                continue
            times = measure(runner, rng, gap_ms / 1e3, wait, args.requests)
            print(f"| {gap_ms:g} ms | {name} | " + " | ".join(f"{t * 1e3:.3f} ms" for t in times) + " |")


if __name__ == "__main__":
    main()
