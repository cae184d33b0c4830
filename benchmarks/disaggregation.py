"""DistServe's question on the simulator: at equal GPU count, does prefill/decode disaggregation
serve more goodput per GPU than colocated replicas, and when not?

For each setup of GPUS H100s serving Llama-3.1-8B (colocated: replicas x TP; disaggregated: xP+yD,
TP 1, KV over a link), the goodput is the highest Poisson rate at which at least ATTAINMENT of
the requests meet both SLOs (bisection over the rate, one simulation per probe), per GPU; the
decode pool runs TP 1 or 2. Cases:
  tight          TTFT and TPOT SLOs a chat service would set, KV over RoCE 400G
  loose          the same SLOs 4x looser
  low_bandwidth  tight SLOs, KV over 25G Ethernet sent after the prefill (no layer-by-layer overlap)

Writes OUT/disaggregation.json: {"tight": {"colocated": g, "disaggregated": g, "best_ratio": "xP+yD",
"best_colocated": "n x tpT", "setups": {...}}, "loose": {...}, "low_bandwidth": {...}}; g in req/s per GPU.

Usage: python benchmarks/disaggregation.py OUT [--gpus 4] [--requests 800]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from kairos.scenario.load import load_scenario
from kairos.scenario.run import run_scenario

ATTAINMENT = 0.9
WORKLOAD = {"workload.input_len": {"kind": "lognormal", "median": 1024, "sigma": 0.5, "min": 64, "max": 8192},
            "workload.output_len": {"kind": "lognormal", "median": 256, "sigma": 0.5, "min": 8, "max": 2048},
            "workload.prefixes": None}
TIGHT = {"ttft_ms": 300.0, "tpot_ms": 10.0}
CASES = {"tight": (TIGHT, "roce-400g", True),
         "loose": ({k: 4 * v for k, v in TIGHT.items()}, "roce-400g", True),
         "low_bandwidth": (TIGHT, "eth-25g", False)}


def setups(gpus: int) -> dict[str, dict[str, Any]]:
    """Every colocated (replicas x TP) and disaggregated (xP+yD, TP 1) split of `gpus` GPUs."""
    out: dict[str, dict[str, Any]] = {}
    tp = 1
    while tp <= gpus:
        if gpus % tp == 0:
            out[f"{gpus // tp} x tp{tp}"] = {"cluster.replicas": gpus // tp, "hardware.tp": tp}
        tp *= 2
    for decode_tp in (1, 2):
        for prefill in range(1, gpus):
            decode, rest = divmod(gpus - prefill, decode_tp)
            if decode and not rest:
                name = f"{prefill}P+{decode}D" + (f" (decode tp{decode_tp})" if decode_tp > 1 else "")
                out[name] = {"cluster.pools": {"prefill": {"replicas": prefill},
                                               "decode": {"replicas": decode, "tp": decode_tp}}}
    return out


def attainment(overrides: dict[str, Any], rate: float, requests: int, slo: dict[str, float], link: str,
               overlap: bool) -> float:
    settings = {**WORKLOAD, **overrides, "workload.rate": rate, "workload.num_requests": requests,
                "cluster.router": "least_outstanding", "slo.ttft_ms": slo["ttft_ms"], "slo.tpot_ms": slo["tpot_ms"]}
    if "cluster.pools" in overrides:
        settings["cluster.disaggregation"] = {"decider": "always", "link": link, "overlap": overlap}
    report = run_scenario(load_scenario(None, settings)).report
    return float(report["summary"]["goodput"]["slo_attainment"])


def goodput(overrides: dict[str, Any], requests: int, slo: dict[str, float], link: str, overlap: bool,
            gpus: int) -> float:
    """The highest rate (req/s) with ATTAINMENT met, by bisection, per GPU."""
    lo, hi = 0.0, 4.0 * gpus
    while attainment(overrides, hi, requests, slo, link, overlap) >= ATTAINMENT:
        lo, hi = hi, 2 * hi
    for _ in range(7):
        mid = (lo + hi) / 2
        if attainment(overrides, mid, requests, slo, link, overlap) >= ATTAINMENT:
            lo = mid
        else:
            hi = mid
    return lo / gpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--requests", type=int, default=800)
    args = parser.parse_args()
    result: dict[str, Any] = {"gpus": args.gpus, "requests": args.requests, "attainment": ATTAINMENT,
                              "workload": WORKLOAD}
    for case, (slo, link, overlap) in CASES.items():
        per_setup = {name: round(goodput(over, args.requests, slo, link, overlap, args.gpus), 3)
                     for name, over in setups(args.gpus).items()}
        colocated = {k: v for k, v in per_setup.items() if "P+" not in k}
        disaggregated = {k: v for k, v in per_setup.items() if "P+" in k}
        best_c, best_d = max(colocated, key=colocated.get), max(disaggregated, key=disaggregated.get)
        result[case] = {"colocated": colocated[best_c], "disaggregated": disaggregated[best_d],
                        "best_colocated": best_c, "best_ratio": best_d, "slo": slo, "link": link,
                        "overlap": overlap,
                        "setups": per_setup}
        print(f"{case:14s} best colocated {best_c} {colocated[best_c]:.3f}, best disaggregated {best_d} "
              f"{disaggregated[best_d]:.3f} req/s per GPU  {per_setup}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "disaggregation.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out / 'disaggregation.json'}")


if __name__ == "__main__":
    main()
