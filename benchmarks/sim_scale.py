"""Simulator cost per request as the fleet grows: the built-in scenario on 8, 64 and 512 replicas.

Each fleet gets the same load per replica (6 req/s and 300 requests each, least_outstanding
routing), so a simulator whose cost per request does not grow with the fleet takes the same
wall time per request at every size. Each size runs in a fresh process.

Writes OUT/scale.json: {"8": {"requests", "wall_s", "simulated_s", "wall_us_per_request"}, "64": ...,
"512": ..., "ratios": {"64": wall per request at 64 / at 8, "512": ...}}.

Usage: python benchmarks/sim_scale.py OUT [--sizes 8,64,512] [--router least_outstanding]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RATE_PER_REPLICA = 6.0
REQUESTS_PER_REPLICA = 300


def run_size(replicas: int, router: str) -> dict:
    from kairos.scenario.load import load_scenario
    from kairos.scenario.run import run_scenario

    scenario = load_scenario(None, {
        "cluster.replicas": replicas, "cluster.router": router,
        "workload.rate": RATE_PER_REPLICA * replicas, "workload.num_requests": REQUESTS_PER_REPLICA * replicas,
    })
    started = time.perf_counter()
    run = run_scenario(scenario)
    wall = time.perf_counter() - started
    summary = run.report["summary"]
    return {"requests": summary["num_requests"], "completed": summary["completed"], "wall_s": round(wall, 2),
            "simulated_s": round(summary["duration_s"], 1),
            "wall_us_per_request": round(1e6 * wall / summary["num_requests"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for scale.json")
    parser.add_argument("--sizes", default="8,64,512", help="replica counts, comma-separated")
    parser.add_argument("--router", default="least_outstanding")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(run_size(args.child, args.router)))
        return
    sizes = [int(n) for n in args.sizes.split(",")]
    result: dict[str, dict] = {}
    for n in sizes:
        cmd = [sys.executable, __file__, str(args.out), "--child", str(n), "--router", args.router]
        result[str(n)] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        print(f"{n:4d} replicas: {result[str(n)]}", flush=True)
    base = result[str(sizes[0])]["wall_us_per_request"]
    result["ratios"] = {str(n): round(result[str(n)]["wall_us_per_request"] / base, 2) for n in sizes[1:]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out / 'scale.json'}: per-request wall time vs {sizes[0]} replicas {result['ratios']}")


if __name__ == "__main__":
    main()
