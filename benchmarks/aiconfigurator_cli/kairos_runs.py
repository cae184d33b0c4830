"""Ask `kairos plan` aiconfigurator's CLI-guide question (Qwen3-32B, 32 H200s, ISL 3000, OSL 512,
TTFT 1000 ms, TPOT 10 ms) and write OUT/kairos.json.

Three ways, each timed:
  - `kairos plan --capacity` on every colocated layout that fills 32 GPUs (TP 8/4/2/1);
  - `kairos plan --capacity` on a few prefill/decode splits of 32 GPUs, aiconfigurator's own among them;
  - `kairos plan --search --disagg --total-gpus 32` (Optuna).

Usage: python benchmarks/aiconfigurator_cli/kairos_runs.py OUT [--trials N] [--percentile P]
(run with Kairos's interpreter and PYTHONPATH=src).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COLOCATED = HERE / "qwen3_32b_h200.yaml"
POOLS = HERE / "qwen3_32b_h200_pd.yaml"
TOTAL_GPUS = 32
OSL = 512
# (prefill replicas, prefill TP, decode replicas, decode TP): aiconfigurator's choice first.
SPLITS = [(16, 1, 2, 8), (8, 2, 2, 8), (4, 4, 2, 8), (16, 1, 4, 4)]


def kairos(args: list[str], log: Path) -> tuple[int, float, str]:
    """Run `kairos ARGS`, its output to `log`; (exit status, wall seconds, last line of stderr)."""
    cmd = [sys.executable, "-m", "kairos.cli.main", *args]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    wall = time.perf_counter() - started
    log.write_text(f"$ kairos {' '.join(args)}\n{proc.stdout}\n{proc.stderr}")
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    return proc.returncode, wall, last


def from_probes(probes: list[dict[str, Any]], gpus: int) -> dict[str, Any]:
    """Capacity, tokens/s/GPU and tokens/s/user from plan.json's probes (the highest load that met)."""
    met = [p for p in probes if p["meets"]]
    if not met:
        return {"capacity_rps": None, "tokens_per_s_per_gpu": None, "tokens_per_s_per_user": None,
                "note": "no load tried meets the SLO"}
    best = max(met, key=lambda p: p["knob"])
    tpot = best["observed_ms"].get("tpot")
    return {"capacity_rps": best["knob"], "tokens_per_s_per_gpu": best["knob"] * OSL / gpus,
            "tokens_per_s_per_user": 1e3 / tpot if tpot else None,
            "ttft_ms": best["observed_ms"].get("ttft"), "tpot_ms": tpot, "served_rps": best["throughput_rps"],
            "probes": len(probes)}


def capacity_cli(name: str, scenario: Path, sets: list[str], gpus: int, percentile: float, out: Path) -> dict[str, Any]:
    run_dir = out / name
    args = ["plan", str(scenario.relative_to(ROOT)), "--capacity", "--percentile", f"{percentile:g}",
            *[a for s in sets for a in ("--set", s)], "-o", str(run_dir)]
    run_dir.mkdir(parents=True, exist_ok=True)
    rc, wall, last = kairos(args, run_dir / "log.txt")
    result: dict[str, Any] = {"name": name, "gpus": gpus, "command": "kairos " + " ".join(args),
                              "wall_s": round(wall, 2), "rc": rc}
    plan = run_dir / "plan.json"
    if plan.exists():
        result.update(from_probes(json.loads(plan.read_text())["probes"], gpus))
    else:
        result["error"] = last
    return result


def split_overrides(pr: int, ptp: int, dr: int, dtp: int) -> dict[str, Any]:
    return {"cluster.pools.prefill.replicas": pr, "cluster.pools.prefill.tp": ptp,
            "cluster.pools.decode.replicas": dr, "cluster.pools.decode.tp": dtp}


def search(out: Path, trials: int, percentile: float, workers: int) -> dict[str, Any]:
    run_dir = out / "search"
    run_dir.mkdir(parents=True, exist_ok=True)
    db = run_dir / "study.db"
    db.unlink(missing_ok=True)
    args = ["plan", str(COLOCATED.relative_to(ROOT)), "--search", "--disagg", "--total-gpus", str(TOTAL_GPUS),
            "--trials", str(trials), "--percentile", f"{percentile:g}", "--tp", "1,2,4,8",
            "--batched-tokens", "5012", "--max-seqs", "512", "--workers", str(workers),
            "--storage", f"sqlite:///{db}", "-o", str(run_dir)]
    rc, wall, last = kairos(args, run_dir / "log.txt")
    result: dict[str, Any] = {"command": "kairos " + " ".join(args), "wall_s": round(wall, 2), "rc": rc}
    plan = run_dir / "plan.json"
    if plan.exists():
        data = json.loads(plan.read_text())
        result.update(trials=data["trials"], best=data["best"])
    else:
        result["error"] = last
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--trials", type=int, default=24, help="--search trials (default 24)")
    parser.add_argument("--percentile", type=float, default=50.0, help="SLO percentile (default 50)")
    parser.add_argument("--workers", type=int, default=2, help="--search worker processes (default 2)")
    opts = parser.parse_args()
    out = opts.out.resolve() / "kairos"
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    notes: list[str] = []
    candidates = []
    for tp in (8, 4, 2, 1):
        r = capacity_cli(f"colocated_tp{tp}x{TOTAL_GPUS // tp}", COLOCATED,
                         [f"hardware.tp={tp}", f"cluster.replicas={TOTAL_GPUS // tp}"], TOTAL_GPUS, opts.percentile, out)
        r.update(mode="colocated", tp=tp, replicas=TOTAL_GPUS // tp)
        candidates.append(r)
        print(f"{r['name']}: {r.get('capacity_rps')} req/s ({r['wall_s']:.0f} s)", file=sys.stderr)
    for pr, ptp, dr, dtp in SPLITS:
        name = f"disagg_{pr}P_tp{ptp}+{dr}D_tp{dtp}"
        overrides = split_overrides(pr, ptp, dr, dtp)
        gpus = pr * ptp + dr * dtp
        r = capacity_cli(name, POOLS, [f"{k}={v}" for k, v in overrides.items()], gpus, opts.percentile, out)
        r.update(mode="disagg", prefill={"replicas": pr, "tp": ptp}, decode={"replicas": dr, "tp": dtp})
        candidates.append(r)
        print(f"{name}: {r.get('capacity_rps')} req/s ({r['wall_s']:.0f} s)", file=sys.stderr)
    searched = search(out, opts.trials, opts.percentile, opts.workers)
    if "error" in searched:
        notes.append(f"`kairos plan --search` exited {searched['rc']}: {searched['error']!r}")
    ok = [c for c in candidates if c.get("tokens_per_s_per_gpu") is not None]
    result = {"percentile": opts.percentile, "total_gpus": TOTAL_GPUS, "candidates": candidates,
              "best": max(ok, key=lambda c: c["tokens_per_s_per_gpu"]) if ok else None,
              "search": searched, "notes": notes, "wall_s": round(time.perf_counter() - started, 1)}
    (opts.out / "kairos.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {opts.out / 'kairos.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
