"""Llumnix's question on the simulator: does live migration lower tail TTFT and preemptions on bursty
traffic, against the same routers without it?

Llama-3.1-70B on 4 replicas of 2 H100s (TP 2: about 2,000 KV blocks of 16 tokens each, so bursts
press on the KV cache), BurstGPT-like Gamma arrivals (cv 4) at 4 req/s, 2,000 requests with
lognormal prompts (median 512) and heavy-tailed outputs (median 256, sigma 1). Each router runs
without migration, with the `imbalance`, the `kv_pressure` and the `virtual_usage` policy (copies over
NVLink 4).

Writes OUT/migration.json: {"without": {ROUTER: {"ttft_p99_ms", "ttft_mean_ms", "preemptions"}},
"with": {ROUTER: {..., "migrations", "downtime_p99_ms"}}, "with_kv_pressure": {...},
"with_virtual_usage": {...}, "settings": {...}}.

Usage: python benchmarks/migration.py OUT [--routers round_robin,power_of_two,least_outstanding,least_demand]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from kairos.scenario.load import load_scenario
from kairos.scenario.run import run_scenario

SETTINGS: dict[str, Any] = {
    "model": "llama-3.1-70b", "hardware.tp": 2, "cluster.replicas": 4,
    "workload.arrival": "gamma", "workload.cv": 4.0, "workload.rate": 4.0, "workload.num_requests": 2000,
    "workload.input_len": {"kind": "lognormal", "median": 512, "sigma": 0.8, "min": 16, "max": 8192},
    "workload.output_len": {"kind": "lognormal", "median": 256, "sigma": 1.0, "min": 8, "max": 4096},
}
VARIANTS = {"without": None, "with": {"policy": "imbalance"}, "with_kv_pressure": {"policy": "kv_pressure"},
            "with_virtual_usage": {"policy": "virtual_usage"}}


def run(router: str, migration: dict[str, Any] | None) -> dict[str, Any]:
    overrides = {**SETTINGS, "cluster.router": router}
    if migration is not None:
        overrides["cluster.migration"] = migration
    report = run_scenario(load_scenario(None, overrides)).report
    summary = report["summary"]
    row: dict[str, Any] = {"ttft_p99_ms": round(summary["ttft_ms"]["p99"], 1),
                           "ttft_mean_ms": round(summary["ttft_ms"]["mean"], 1),
                           "preemptions": summary["preemptions"]}
    if migration is not None:
        m = report["migration"]
        row["migrations"] = m["migrations"]
        row["downtime_p99_ms"] = None if m["downtime_ms"] is None else round(m["downtime_ms"]["p99"], 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--routers", default="round_robin,power_of_two,least_outstanding,least_demand")
    args = parser.parse_args()
    result: dict[str, Any] = {name: {} for name in VARIANTS}
    for router in args.routers.split(","):
        for name, migration in VARIANTS.items():
            result[name][router] = run(router, migration)
            print(f"{router:18s} {name:17s} {result[name][router]}", flush=True)
    result["settings"] = SETTINGS
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "migration.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out / 'migration.json'}")


if __name__ == "__main__":
    main()
