"""The policy library's experiments: does each policy move its paper's metric, on real traces?

Every experiment runs Llama-3.1-8B on one H100 (the built-in scenario's deployment, roofline step
times) on a window of an Azure LLM 2023 trace from ../shared/data/traces. "Load" is the arrival
rate over the deployment's saturated throughput on that window (every request queued at once,
FCFS): a trace's own arrival times are scaled (`workload.time_scale`) to reach it.

- sjf_vs_fcfs: p50/p99 E2E at 90 % load, Azure code trace, max_num_seqs 16 (output length sets
  how long a request holds one of few seats: what SJF ranks by), the noisy-oracle predictor at
  sigma 0, 0.5 and 1.0 (DriftSched's error model).
- edf_vs_fcfs: goodput with two SLO classes (interactive: TTFT 1 s; relaxed: TTFT 20 s), Azure
  conversation trace at 100 % load.
- vtc_fairness: two tenants, one sending 4 of every 5 requests, at 200 % load; the ratio of the
  most- to the least-served tenant's weighted tokens (prompt + 2 x output, VTC's weights) among
  requests completed while requests still arrive (both tenants backlogged).
- past_future: goodput and preemptions on a KV-tight replica (1,500 blocks of 16 tokens) at
  90 % load, against greedy admission (fcfs) and full-output reservation (past_future reserving
  the trace's longest output, 1,000 tokens, for every request).
- laps_vs_fcfs: mean TTFT of short prompts (at most 256 tokens) at 90 % load, conversation trace.
- filler: interactive requests (conversation trace at 50 % load, TPOT SLO 50 ms) with an offline
  backlog (8,000 requests of the same trace's lengths, all queued at t=0, best effort): offline
  output tokens/s served while the interactive requests run (improvement: as a share of the
  interactive output tokens/s alone), under fcfs (the backlog queues ahead of interactive
  requests) and under filler at the largest batch_tokens (of 256, 512, 1024, 2048) that keeps
  interactive p99 TPOT within the SLO.
- vllm_sjf: copied from benchmarks/vllm_policies.sh's OUT/vllm_sjf.json (real vLLM) when there.

Writes OUT/policies.json: {EXPERIMENT: {"baseline": {...}, "policy": {...}, "improvement_pct": x,
...}}; improvement is positive when the policy is better.

Usage: python benchmarks/policies.py OUT [--only sjf_vs_fcfs,vtc_fairness] [--vllm-json PATH]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from kairos.scenario.load import load_scenario
from kairos.scenario.run import ScenarioRun, run_scenario
from kairos.workload.kairos_jsonl import save_kairos_jsonl
from kairos.workload.spec import RequestSpec
from kairos.workload.traces import load_trace

TRACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces"
CODE, CONV = TRACES / "azure_llm_2023_code.csv", TRACES / "azure_llm_2023_conv.csv"
NUM_REQUESTS = 3000
NO_SLO = {"slo.ttft_ms": None, "slo.tpot_ms": None}
OFFLINE = 8000  # the filler experiment's offline backlog: more than the interactive window can serve


def simulate(overrides: dict[str, Any]) -> ScenarioRun:
    return run_scenario(load_scenario(None, overrides))


def trace_workload(path: Path, num_requests: int = NUM_REQUESTS) -> dict[str, Any]:
    return {"workload.kind": "trace", "workload.path": str(path), "workload.num_requests": num_requests}


def time_scale_for(load: float, overrides: dict[str, Any]) -> float:
    """The trace speed-up that makes the arrival rate `load` x the deployment's saturated throughput."""
    requests = load_trace(overrides["workload.path"], "auto", num_requests=overrides["workload.num_requests"]).requests
    span = max(r.arrival_s for r in requests) - min(r.arrival_s for r in requests)
    saturated = simulate({**overrides, "workload.time_scale": 1e6}).report["summary"]["throughput"]["requests_per_s"]
    return load * saturated * span / len(requests)


def improvement(baseline: float, policy: float, higher_is_better: bool = False) -> float:
    change = (policy - baseline) / baseline * 100 if baseline else 0.0
    return round(change if higher_is_better else -change, 1)


def latency(run: ScenarioRun) -> dict[str, Any]:
    summary = run.report["summary"]
    return {"e2e_p50_ms": round(summary["e2e_ms"]["p50"], 1), "e2e_p99_ms": round(summary["e2e_ms"]["p99"], 1),
            "ttft_p50_ms": round(summary["ttft_ms"]["p50"], 1), "preemptions": summary["preemptions"]}


# ---- experiments ---------------------------------------------------------------------------
def sjf_vs_fcfs() -> dict[str, Any]:
    base = {**trace_workload(CODE), "engine.max_num_seqs": 16}
    base["workload.time_scale"] = time_scale_for(0.9, base)
    baseline = latency(simulate({**base, "engine.policy": "fcfs"}))
    by_sigma = {}
    for sigma in (0.0, 0.5, 1.0):
        run = simulate({**base, "engine.policy": "sjf", "engine.predictor": "noisy",
                        "engine.predictor_options": {"sigma": sigma}})
        row = {**latency(run), "predictor_mae_tokens": round(run.report["prediction"]["mae_tokens"], 1)}
        by_sigma[str(sigma)] = {"policy": row, "improvement_pct": improvement(baseline["e2e_p50_ms"], row["e2e_p50_ms"])}
    return {"baseline": baseline, **by_sigma["0.0"], "by_sigma": by_sigma,
            "settings": {"trace": CODE.name, "load": 0.9, "time_scale": round(base["workload.time_scale"], 3),
                         "max_num_seqs": 16, "requests": NUM_REQUESTS, "metric": "p50 E2E"}}


def edf_vs_fcfs() -> dict[str, Any]:
    classes = [{"name": "interactive", "share": 0.5, "slo": {"ttft_ms": 1_000}},
               {"name": "relaxed", "share": 0.5, "slo": {"ttft_ms": 20_000}}]
    base = {**trace_workload(CONV), **NO_SLO, "workload.classes": classes}
    base["workload.time_scale"] = time_scale_for(1.0, base)

    def goodput(policy: str) -> dict[str, Any]:
        summary = simulate({**base, "engine.policy": policy}).report["summary"]
        return {"goodput_rps": summary["goodput"]["requests_per_s"],
                "slo_attainment": round(summary["goodput"]["slo_attainment"], 3),
                "by_class_attainment": {name: round(group["goodput"]["slo_attainment"], 3)
                                        for name, group in summary["by_class"].items()}}

    baseline, policy = goodput("fcfs"), goodput("edf")
    return {"baseline": baseline, "policy": policy,
            "improvement_pct": improvement(baseline["goodput_rps"], policy["goodput_rps"], higher_is_better=True),
            "settings": {"trace": CONV.name, "load": 1.0, "classes": classes, "metric": "goodput (req/s)"}}


def vtc_fairness() -> dict[str, Any]:
    base = {**trace_workload(CONV), **NO_SLO, "workload.tenants": {"count": 2, "shares": [0.8, 0.2]}}
    base["workload.time_scale"] = time_scale_for(2.0, base)

    def served(policy: str) -> dict[str, Any]:
        records = simulate({**base, "engine.policy": policy}).records
        # While requests still arrive, both tenants have requests waiting: who gets served then.
        window_end = max(r.arrival_s for r in records)
        tokens: dict[str, int] = {}
        for r in records:
            if r.finished and r.finish_s <= window_end:
                tokens[r.tenant] = tokens.get(r.tenant, 0) + r.input_tokens + 2 * r.output_tokens
        return {"weighted_tokens": tokens, "max_over_min": round(max(tokens.values()) / min(tokens.values()), 2)}

    baseline, policy = served("fcfs"), served("vtc")
    return {"baseline": baseline, "policy": policy,
            "improvement_pct": improvement(baseline["max_over_min"], policy["max_over_min"]),
            "settings": {"trace": CONV.name, "load": 2.0, "tenant_shares": [0.8, 0.2],
                         "metric": "most / least served tenant's weighted tokens, arrivals window"}}


def past_future() -> dict[str, Any]:
    base = {**trace_workload(CONV), "engine.num_gpu_blocks": 1500}
    base["workload.time_scale"] = time_scale_for(0.9, base)

    def admitted(policy: str, predictor: dict[str, Any] | None = None) -> dict[str, Any]:
        extra = {} if predictor is None else {"engine.predictor": predictor["name"],
                                              "engine.predictor_options": predictor.get("options", {})}
        summary = simulate({**base, "engine.policy": policy, **extra}).report["summary"]
        return {"goodput_rps": summary["goodput"]["requests_per_s"], "preemptions": summary["preemptions"],
                "ttft_p99_ms": round(summary["ttft_ms"]["p99"], 1)}

    greedy = admitted("fcfs")
    full = admitted("past_future", {"name": "constant", "options": {"tokens": 1000}})
    policy = admitted("past_future", {"name": "histogram"})
    return {"baseline": greedy, "full_reservation": full, "policy": policy,
            "improvement_pct": improvement(greedy["goodput_rps"], policy["goodput_rps"], higher_is_better=True),
            "improvement_over_full_reservation_pct": improvement(full["goodput_rps"], policy["goodput_rps"],
                                                                 higher_is_better=True),
            "settings": {"trace": CONV.name, "load": 0.9, "kv_blocks": 1500, "predictor": "histogram",
                         "metric": "goodput (req/s; SLO TTFT 500 ms, TPOT 50 ms)"}}


def laps_vs_fcfs() -> dict[str, Any]:
    short_tokens = 256
    base = {**trace_workload(CONV), **NO_SLO}
    base["workload.time_scale"] = time_scale_for(0.9, base)

    def short_ttft(policy: str) -> dict[str, Any]:
        records = simulate({**base, "engine.policy": policy}).records
        short = [r.ttft_s for r in records if r.input_tokens <= short_tokens and r.ttft_s is not None]
        every = [r.ttft_s for r in records if r.ttft_s is not None]
        return {"short_ttft_mean_ms": round(1e3 * sum(short) / len(short), 1), "short_requests": len(short),
                "all_ttft_mean_ms": round(1e3 * sum(every) / len(every), 1)}

    baseline = short_ttft("fcfs")
    policy = short_ttft("laps")
    return {"baseline": baseline, "policy": policy,
            "improvement_pct": improvement(baseline["short_ttft_mean_ms"], policy["short_ttft_mean_ms"]),
            "settings": {"trace": CONV.name, "load": 0.9, "short_tokens": short_tokens,
                         "metric": "mean TTFT of prompts of at most 256 tokens"}}


def filler(out: Path) -> dict[str, Any]:
    tpot_slo_ms = 50.0
    online = {**trace_workload(CONV, 2000), **NO_SLO}
    time_scale = time_scale_for(0.5, online)
    interactive = [_with_class(r, "interactive") for r in
                   load_trace(CONV, "auto", time_scale=time_scale, num_requests=2000).requests]
    offline = [_with_class(r, "batch", arrival_s=0.0, request_id=f"offline-{i}") for i, r in
               enumerate(load_trace(CONV, "auto", num_requests=2000 + OFFLINE).requests[2000:])]
    files = {}
    for name, specs in (("interactive", interactive), ("mixed", interactive + offline)):
        files[name] = out / f"filler_{name}.jsonl"
        save_kairos_jsonl(files[name], specs)

    def run(workload: str, policy: str, knobs: dict[str, Any] | None = None) -> dict[str, Any]:
        records = simulate({**NO_SLO, "workload.kind": "trace", "workload.path": str(files[workload]),
                            "engine.policy": policy, "engine.policy_options": knobs or {}}).records
        online_records = [r for r in records if r.slo_class == "interactive"]
        window = max(r.finish_s for r in online_records if r.finish_s is not None)
        tpots = sorted(r.tpot_s for r in online_records if r.tpot_s is not None)
        offline_tokens = sum(r.output_tokens for r in records
                             if r.slo_class == "batch" and r.finish_s is not None and r.finish_s <= window)
        return {"interactive_tpot_p99_ms": round(1e3 * tpots[int(0.99 * (len(tpots) - 1))], 1),
                "interactive_ttft_p50_ms": round(1e3 * _median([r.ttft_s for r in online_records]), 1),
                "interactive_output_tokens_per_s": round(sum(r.output_tokens for r in online_records) / window, 1),
                "offline_output_tokens_per_s": round(offline_tokens / window, 1)}

    alone = run("interactive", "fcfs")
    mixed_fcfs = run("mixed", "fcfs")
    chosen, policy = None, None
    for batch_tokens in (256, 512, 1024, 2048):
        row = run("mixed", "filler", {"batch_tokens": batch_tokens})
        if row["interactive_tpot_p99_ms"] <= tpot_slo_ms:
            chosen, policy = batch_tokens, row
    if policy is None:
        policy = run("mixed", "filler", {"batch_tokens": 256})
    return {"baseline": alone, "fcfs_with_offline": mixed_fcfs, "policy": {**policy, "batch_tokens": chosen},
            # Output tokens/s the offline class adds, over what the interactive class alone produced.
            "improvement_pct": round(100 * policy["offline_output_tokens_per_s"]
                                     / alone["interactive_output_tokens_per_s"], 1),
            "offline_tokens_per_s_added": policy["offline_output_tokens_per_s"],
            "tpot_slo_ms": tpot_slo_ms,
            "settings": {"trace": CONV.name, "load": 0.5, "interactive_requests": 2000,
                         "offline_requests": len(offline), "metric": "offline output tokens/s added, interactive"
                         " p99 TPOT within the SLO"}}


def vllm_sjf(path: Path) -> dict[str, Any]:
    if path.is_file():
        return json.loads(path.read_text())
    return {"status": f"not run here: benchmarks/vllm_policies.sh OUT writes {path.name} (real vLLM)"}


def _with_class(spec: RequestSpec, slo_class: str, **changes: Any) -> RequestSpec:
    return replace(spec, slo_class=slo_class, **changes)


def _median(values: list[float | None]) -> float:
    known = sorted(v for v in values if v is not None)
    return known[len(known) // 2]


EXPERIMENTS: dict[str, Callable[..., dict[str, Any]]] = {
    "sjf_vs_fcfs": sjf_vs_fcfs, "edf_vs_fcfs": edf_vs_fcfs, "vtc_fairness": vtc_fairness,
    "past_future": past_future, "laps_vs_fcfs": laps_vs_fcfs, "filler": filler,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--only", default=",".join(EXPERIMENTS), help="comma-separated experiments")
    parser.add_argument("--vllm-json", type=Path, default=None, help="vllm_sjf.json of benchmarks/vllm_policies.sh")
    args = parser.parse_args()
    if not TRACES.is_dir():
        parser.error(f"traces not found: {TRACES}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "policies.json"
    result: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    for name in args.only.split(","):
        started = time.perf_counter()
        result[name] = EXPERIMENTS[name](args.out) if name == "filler" else EXPERIMENTS[name]()
        print(f"{name:13s} {time.perf_counter() - started:6.1f} s  improvement {result[name]['improvement_pct']}"
              f"  baseline {result[name]['baseline']}  policy {result[name]['policy']}", flush=True)
    result["vllm_sjf"] = vllm_sjf(args.vllm_json or args.out / "vllm_sjf.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
