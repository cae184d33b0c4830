"""Where a twin's TTFT error lies: measured against replayed TTFT per request, grouped by the idle
gap before each request and by its prompt length.

Replays a measured run (`kairos bench` output) under a step-time model, as `kairos validate` does.
The idle gap is the time between a request's arrival and the end of the last request in flight before
it (0: others were in flight, the engine busy). A wake-up cost shows as an error that grows with the
gap; one already there at gap 0 lies in the busy engine or the front end. An error that grows with the
prompt is a per-token cost; one that does not, a per-request one. With the engine's own queue and
prefill time (the run's vllm:* counters), the mean TTFT splits into the front end (what the client
sees beyond the engine), the engine's queue and its prefill phase, for the run and for the replay.

Writes OUT.json: {"by_gap": [{"range": [lo, hi], "requests", "measured_ttft_ms", "simulated_ttft_ms"}],
"by_prompt": [...], "split_ms": {"measured": {"ttft", "front_end", "engine_queue", "engine_prefill"},
"simulated": {...}} (where the run has the counters), "run", "perf"}.

Usage: python benchmarks/ttft_breakdown.py RUN_DIR --perf calibrated:PROFILE.json -o OUT.json
(e.g. a case of benchmarks/vllm_fidelity.sh: OUT/light/run and OUT/profile.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from kairos.bench.run_format import load_measured_run
from kairos.scenario.run import build_simulation, resolve_deployment
from kairos.scenario.step_models import load_calibrated
from kairos.validate.replay import replay_scenario, replay_specs

GAPS_S = ((0.0, 0.0), (0.0, 0.05), (0.05, 0.2), (0.2, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, float("inf")))
PROMPTS = ((0, 100), (100, 200), (200, 300), (300, 400), (400, 600), (600, 1000), (1000, float("inf")))


def idle_gaps(arrivals: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Each request's idle gap: its arrival less the latest end among the requests that arrived
    before it, 0 where one of them was still in flight."""
    order = np.argsort(arrivals, kind="stable")
    latest_end = np.maximum.accumulate(ends[order])
    before = np.concatenate(([-np.inf], latest_end[:-1]))
    gaps = np.empty_like(arrivals)
    gaps[order] = np.maximum(0.0, arrivals[order] - before)
    return gaps


def groups(name: str, key: np.ndarray, ranges: tuple[tuple[float, float], ...], ttft: np.ndarray,
           sim: np.ndarray) -> list[dict[str, Any]]:
    """Mean measured and simulated TTFT of the requests whose `key` lies in each range (lo, hi];
    a range (0, 0) holds the zeros. Printed as it goes."""
    rows = []
    for lo, hi in ranges:
        chosen = key == 0.0 if hi == 0.0 else (key > lo) & (key <= hi)
        if chosen.any():
            row = {"range": [lo, hi], "requests": int(chosen.sum()),
                   "measured_ttft_ms": round(float(ttft[chosen].mean()), 2),
                   "simulated_ttft_ms": round(float(sim[chosen].mean()), 2)}
            rows.append(row)
            print(f"{name} {lo:g}-{hi:g}: {row['requests']:4d} requests, TTFT measured {row['measured_ttft_ms']:7.2f}"
                  f" ms, simulated {row['simulated_ttft_ms']:7.2f} ms")
    return rows


def split(ttft_ms: float, queue_ms: float, prefill_ms: float) -> dict[str, float]:
    """A mean TTFT as the front end (the rest), the engine's queue and its prefill phase (as vLLM's
    request_queue_time and request_prefill_time histograms time them)."""
    return {"ttft": round(ttft_ms, 2), "front_end": round(ttft_ms - queue_ms - prefill_ms, 2),
            "engine_queue": round(queue_ms, 2), "engine_prefill": round(prefill_ms, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--perf", required=True, help="the step-time model, e.g. calibrated:PROFILE.json")
    parser.add_argument("--gpu", default=None)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    run = load_measured_run(args.run)
    scenario = replay_scenario(run, gpu=args.gpu, perf=args.perf)
    deployment = resolve_deployment(scenario, load_calibrated(scenario.perf.model))
    sim_run = build_simulation(scenario, deployment, replay_specs(run))
    outcome = sim_run.run()
    simulated = {r.request_id: r.first_token_s - r.arrival_s for r in outcome.records if r.first_token_s is not None}
    measured = [r for r in run.completed if r.request_id in simulated]
    arrivals = np.array([r.arrival_s for r in measured])
    gaps = idle_gaps(arrivals, arrivals + np.array([r.e2e_s for r in measured]))
    ttft = np.array([r.ttft_s for r in measured]) * 1e3
    sim = np.array([simulated[r.request_id] for r in measured]) * 1e3
    prompts = np.array([r.input_tokens for r in measured], dtype=np.float64)
    by_gap = groups("gap", gaps, GAPS_S, ttft, sim)
    by_prompt = groups("prompt", prompts, PROMPTS, ttft, sim)
    result: dict[str, Any] = {"run": str(args.run), "perf": args.perf, "by_gap": by_gap, "by_prompt": by_prompt}
    phases = ((run.meta.get("kairos_bench") or {}).get("server_counters") or {}).get("engine_phases") or {}
    if phases.get("queue_ms") is not None and phases.get("prefill_ms") is not None:
        latency = sim_run.request_latency or (lambda _: 0.0)
        done = [r for r in outcome.records if r.first_scheduled_s is not None and r.first_token_s is not None]
        front_sim = 1e3 * float(np.mean([latency(r.input_tokens) for r in done]))
        result["split_ms"] = {
            "measured": split(float(ttft.mean()), phases["queue_ms"], phases["prefill_ms"]),
            "simulated": split(float(sim.mean()), 1e3 * float(np.mean([r.first_scheduled_s - r.arrival_s
                                                                        for r in done])) - front_sim,
                               1e3 * float(np.mean([r.first_token_s - r.first_scheduled_s for r in done]))),
        }
        for name, parts in result["split_ms"].items():
            print(f"{name:9s} TTFT {parts['ttft']:7.2f} ms = front end {parts['front_end']:6.2f}"
                  f" + engine queue {parts['engine_queue']:6.2f} + engine prefill {parts['engine_prefill']:6.2f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
