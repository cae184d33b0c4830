"""The engine alone (no HTTP) under the race workload: output tokens/s of a closed loop, in-process.

Runs `kairos serve`'s EngineRunner on the race's model and limits (small preset, block 32,
64 sequences, 512 batched tokens, 4096 blocks) with the prompts `kairos bench` would send
(issue-18 lengths, shared prefixes), keeping CONCURRENCY requests in flight. Prints the
output tokens/s, the steps/s and the mean step time. Run it pinned to one core:

    taskset -c 1 python benchmarks/engine_closed_loop.py [--attention auto|native|sdpa] [--requests N]
"""

from __future__ import annotations

import argparse
import time

import torch

from kairos.bench.prompts import PromptBuilder
from kairos.serve import EngineRunner, RunnerConfig, load_model
from kairos.workload.config import WorkloadConfig
from kairos.workload.synthetic import generate_synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small")
    parser.add_argument("--attention", default="auto")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    loaded = load_model(args.model, dtype=args.dtype)
    runner = EngineRunner(loaded, RunnerConfig(block_size=32, num_blocks=4096, max_num_seqs=64,
                                               max_num_batched_tokens=512, ignore_eos=True,
                                               attention=args.attention))
    workload = WorkloadConfig.model_validate({
        "num_requests": args.requests, "rate": float("inf"),
        "input_len": {"kind": "lognormal", "median": 200, "sigma": 0.6, "min": 16, "max": 1024},
        "output_len": {"kind": "lognormal", "median": 64, "sigma": 0.6, "min": 4, "max": 256}})
    specs = generate_synthetic(workload, seed=1)
    prompts = PromptBuilder(vocab_size=loaded.config.vocab_size, seed=1)
    pending = [(prompts.token_ids(s), s.output_len) for s in specs]

    def run(items: list[tuple[list[int], int]]) -> tuple[int, int, float]:
        queue = list(reversed(items))
        live: list = []
        produced = steps = 0
        start = time.perf_counter()
        while queue or live:
            while queue and len(live) < args.concurrency:
                ids, out_len = queue.pop()
                live.append(runner.add(ids, max_tokens=out_len))
            runner.step()
            steps += 1
            still = []
            for req in live:
                if req.status.name == "FINISHED":
                    produced += req.num_output
                else:
                    still.append(req)
            live = still
        return produced, steps, time.perf_counter() - start

    run(pending[:8])  # warm-up: lazy initialisation, first native build
    if args.profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.enable()
    produced, steps, seconds = run(pending)
    if args.profile:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    print(f"attention={runner.attention} {produced} output tokens in {seconds:.2f} s: "
          f"{produced / seconds:.0f} tok/s, {steps / seconds:.1f} steps/s, {1e3 * seconds / steps:.2f} ms/step")


if __name__ == "__main__":
    main()
