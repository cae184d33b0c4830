"""Measure a vLLM server's front-end time per request, for kairos/perf/front_ends.json.

Sends one-token requests of several prompt lengths to an idle server, one at a
time, and subtracts the engine's queue and prefill time (from its /metrics) from
each client TTFT (kairos.probes.front_end). Prints the fitted entry and writes it,
with every sample, to OUT.

Usage: python benchmarks/front_end_time.py URL --vocab-size N [--repeats 12] -o OUT.json
(for vLLM on this machine: benchmarks/vllm_cpu/serve.sh, then this with --vocab-size of its config).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
from pathlib import Path

from kairos.bench.client import CompletionClient, normalize_url
from kairos.probes.front_end import REPEATS, fit_front_end, probe_front_end
from kairos.errors import KairosError


async def main(args: argparse.Namespace) -> dict:
    base = normalize_url(args.url)
    async with CompletionClient(base, timeout_s=30.0) as client:
        info = await client.probe()
    if not info.models:
        raise KairosError(f"{base}/v1/models lists no model")
    entry = info.models[0]
    samples = await probe_front_end(base, str(entry["id"]), args.vocab_size, int(entry.get("max_model_len") or 2049),
                                    repeats=args.repeats)
    request_s, per_token_s = fit_front_end(samples)
    return {
        "engine": args.engine, "version": info.version,
        "request_ms": round(request_s * 1e3, 3), "per_input_token_us": round(per_token_s * 1e6, 4),
        "source": (f"benchmarks/front_end_time.py against {args.engine} {info.version} "
                   f"({platform.machine()}, {args.note}), token-id prompts: no tokenization"),
        "samples": [{"prompt_len": s.prompt_len, "client_ttft_ms": s.client_ttft_s * 1e3, "engine_ms": s.engine_s * 1e3}
                    for s in samples],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--vocab-size", type=int, required=True)
    parser.add_argument("--engine", default="vllm")
    parser.add_argument("--note", default="2-vCPU VM, server pinned as benchmarks/vllm_cpu/serve.sh does")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("-o", "--output", type=Path, required=True)
    arguments = parser.parse_args()
    try:
        result = asyncio.run(main(arguments))
    except KairosError as err:
        sys.exit(f"error: {err}")
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(result, indent=2) + "\n")
    print({k: v for k, v in result.items() if k != "samples"})
