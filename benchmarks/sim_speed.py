"""Simulator speed: wall time and peak memory for one hour of real traffic.

Cases (each in a fresh process, so peak memory is its own):
  azure      azure_llm_2023_conv (19,366 requests, 1 h) on llama-3.1-8b, one h100
  mooncake   mooncake_conversation (12,031 requests, 1 h) on 4 h100 replicas, prefix_affinity

Usage: python benchmarks/sim_speed.py [--data DIR] [--case azure|mooncake|all] [--step-by-step]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

CASES = {
    "azure": {"workload.kind": "trace", "workload.path": "traces/azure_llm_2023_conv.csv"},
    "mooncake": {"workload.kind": "trace", "workload.path": "traces/mooncake_conversation.jsonl",
                 "cluster.replicas": 4, "cluster.router": "prefix_affinity"},
}


def run_case(name: str, data: Path, fast: bool) -> dict:
    from kairos.scenario.load import load_scenario
    from kairos.scenario.run import run_scenario

    overrides = dict(CASES[name])
    overrides["workload.path"] = str(data / overrides["workload.path"])
    scenario = load_scenario(None, overrides)
    started = time.perf_counter()
    run = run_scenario(scenario, fast_decode=fast)
    wall = time.perf_counter() - started
    summary = run.report["summary"]
    simulated = summary["duration_s"]
    steps = sum(r["steps"] for r in run.report["replicas"])
    return {
        "case": name, "fast_decode": fast, "requests": summary["num_requests"],
        "completed": summary["completed"], "simulated_s": round(simulated, 1),
        "wall_s": round(wall, 2), "speedup_vs_real_time": round(simulated / wall, 1),
        "engine_steps": steps, "steps_per_s": round(steps / wall),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ttft_mean_ms": summary["ttft_ms"]["mean"], "tpot_mean_ms": summary["tpot_ms"]["mean"],
        "prefix_cache_hit_rate": summary["prefix_cache_hit_rate"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--step-by-step", action="store_true", help="disable the fused decode fast path")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.case, args.data, not args.step_by_step)))
        return
    names = list(CASES) if args.case == "all" else [args.case]
    rows = []
    for name in names:
        cmd = [sys.executable, __file__, "--child", "--case", name, "--data", str(args.data)]
        if args.step_by_step:
            cmd.append("--step-by-step")
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
