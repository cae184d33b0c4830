"""Llumnix's question on the simulator: does live migration lower tail TTFT and preemptions on bursty
traffic, against the same routers without it?

Llama-3.1-70B on 4 replicas of 2 H100s (TP 2: about 2,000 KV blocks of 16 tokens each, so bursts
press on the KV cache), BurstGPT-like Gamma arrivals (cv 4) at 4 req/s, 2,000 requests with
lognormal prompts (median 512) and heavy-tailed outputs (median 256, sigma 1). Each router runs
without migration and with each migration policy (copies over NVLink 4): `balanced` (Llumnix's
pairing on free blocks per request) is "with"; `imbalance` and `kv_pressure` are kept beside it.

A Gamma trace this bursty differs a lot from seed to seed (0 to 95 preemptions for one setting), so
each row is the mean over `--seeds` workload seeds, the same seeds for every row.

Writes OUT/migration.json: {"without": {ROUTER: {"ttft_p99_ms", "ttft_mean_ms", "preemptions",
"per_seed": [...]}}, "with": {ROUTER: {..., "migrations", "downtime_p99_ms"}}, "with_imbalance": {...},
"with_kv_pressure": {...}, "settings": {...}}.

Usage: python benchmarks/migration.py OUT [--routers round_robin,...] [--seeds 10]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from kairos.scenario.load import load_scenario
from kairos.scenario.run import run_scenario

SETTINGS: dict[str, Any] = {
    "model": "llama-3.1-70b", "hardware.tp": 2, "cluster.replicas": 4,
    "workload.arrival": "gamma", "workload.cv": 4.0, "workload.rate": 4.0, "workload.num_requests": 2000,
    "workload.input_len": {"kind": "lognormal", "median": 512, "sigma": 0.8, "min": 16, "max": 8192},
    "workload.output_len": {"kind": "lognormal", "median": 256, "sigma": 1.0, "min": 8, "max": 4096},
}
VARIANTS = {"without": None, "with": {"policy": "balanced"}, "with_imbalance": {"policy": "imbalance"},
            "with_kv_pressure": {"policy": "kv_pressure"}}


def run(router: str, migration: dict[str, Any] | None, seed: int) -> dict[str, Any]:
    overrides = {**SETTINGS, "cluster.router": router, "seed": seed}
    if migration is not None:
        overrides["cluster.migration"] = migration
    report = run_scenario(load_scenario(None, overrides)).report
    summary = report["summary"]
    row: dict[str, Any] = {"ttft_p99_ms": summary["ttft_ms"]["p99"], "ttft_mean_ms": summary["ttft_ms"]["mean"],
                           "preemptions": summary["preemptions"]}
    if migration is not None:
        m = report["migration"]
        row["migrations"] = m["migrations"]
        row["downtime_p99_ms"] = 0.0 if m["downtime_ms"] is None else m["downtime_ms"]["p99"]
    return row


def mean_row(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's mean over the seeds, and the seeds' rows."""
    row: dict[str, Any] = {key: round(float(np.mean([r[key] for r in per_seed])), 1) for key in per_seed[0]}
    row["per_seed"] = [{key: round(value, 1) for key, value in r.items()} for r in per_seed]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--routers", default="round_robin,power_of_two,least_outstanding,least_demand")
    parser.add_argument("--seeds", type=int, default=10, help="workload seeds per row (0..N-1). Default 10.")
    args = parser.parse_args()
    result: dict[str, Any] = {name: {} for name in VARIANTS}
    for router in args.routers.split(","):
        for name, migration in VARIANTS.items():
            row = mean_row([run(router, migration, seed) for seed in range(args.seeds)])
            result[name][router] = row
            shown = {k: v for k, v in row.items() if k != "per_seed"}
            print(f"{router:18s} {name:17s} {shown}", flush=True)
    result["settings"] = {**SETTINGS, "seeds": args.seeds}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "migration.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out / 'migration.json'}")


if __name__ == "__main__":
    main()
