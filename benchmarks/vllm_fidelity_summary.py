"""OUT/summary.json of benchmarks/vllm_fidelity.sh: each case's errors on the means, against the bars.

Usage: python benchmarks/vllm_fidelity_summary.py OUT_DIR CASE [CASE ...]
Reads OUT_DIR/CASE/validation.json (kairos validate) and OUT_DIR/CASE/run/meta.json (kairos bench).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

METRICS = ("ttft_ms", "tpot_ms", "e2e_ms")
BAR_PCT = 10.0  # every case's mean TTFT, TPOT and E2E within this of vLLM's
BAR_POINTS = 5.0  # the prefix-cache hit rate within this many points of vLLM's


def case_summary(case_dir: Path) -> dict:
    validation = json.loads((case_dir / "validation.json").read_text())
    meta = json.loads((case_dir / "run" / "meta.json").read_text())
    means = {name: validation["metrics"][name]["mean"] for name in METRICS}
    counters = validation.get("server_counters", {})
    summary = {name: means[name]["error_pct"] for name in METRICS}
    summary.update(counters)
    summary["busy_share"] = validation.get("simulated_busy_share")
    summary["rate"] = meta["kairos_bench"]["workload"].get("rate")
    summary["num_requests"] = validation["num_requests"]
    summary["measured"] = {name: means[name]["measured"] for name in METRICS}
    summary["simulated"] = {name: means[name]["simulated"] for name in METRICS}
    hit = counters.get("prefix_cache_hit_rate")
    summary["within_bars"] = (all(abs(summary[name]) <= BAR_PCT for name in METRICS)
                              and (hit is None or abs(hit["error_points"]) <= BAR_POINTS))
    return summary


def main(out: Path, cases: list[str]) -> None:
    summary = {
        "cases": {name: case_summary(out / name) for name in cases},
        "bars": {"mean_error_pct": BAR_PCT, "prefix_cache_hit_rate_points": BAR_POINTS},
        "profile": str(out / "profile.json"),
    }
    summary["within_bars"] = all(case["within_bars"] for case in summary["cases"].values())
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{'case':12s} {'rate':>6s} {'busy':>6s} {'TTFT':>8s} {'TPOT':>8s} {'E2E':>8s} {'hit rate':>18s} {'preempt':>10s}")
    for name, case in summary["cases"].items():
        hit = case.get("prefix_cache_hit_rate")
        hits = f"{hit['measured']:.1%}/{hit['simulated']:.1%}" if hit else "-"
        pre = case.get("preemptions")
        pres = f"{pre['measured']}/{pre['simulated']}" if pre else "-"
        busy = f"{case['busy_share']:.0%}" if case["busy_share"] is not None else "-"
        print(f"{name:12s} {case['rate']:6g} {busy:>6s} {case['ttft_ms']:+7.1f}% {case['tpot_ms']:+7.1f}% "
              f"{case['e2e_ms']:+7.1f}% {hits:>18s} {pres:>10s}")
        phases = case.get("engine_phases")
        if phases:
            print(" " * 13 + "engine time per request, vLLM/twin: " + ", ".join(
                f"{key.removesuffix('_ms')} {phases[key]['measured']:.1f}/{phases[key]['simulated']:.1f} ms"
                for key in ("queue_ms", "prefill_ms", "decode_ms"))
                + f", steps {phases['steps']['measured']}/{phases['steps']['simulated']}")
    print(f"within the bars: {summary['within_bars']}  ({out / 'summary.json'})")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2:])
