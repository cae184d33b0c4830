"""Arrival rates at which a calibrated engine is a given share of the time busy, by the twin's reckoning.

Usage: python benchmarks/vllm_fidelity_rates.py PROFILE SHARE [SHARE ...] [-- KAIROS_SIMULATE_ARGS]
Prints one rate (requests/s) per SHARE (0 < SHARE < 1), found by bisection on
`kairos simulate` runs of 300 Poisson requests with no shared prompts on the
profile's engine settings; the arguments after `--` (benchmarks/vllm_fidelity.sh
passes its lengths as `--set workload...`) complete the workload. So the
cases' loads follow the machine's speed at calibration rather than constants.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

SCENARIO = """
model: {model}
engine: {{block_size: {block_size}, max_num_seqs: {max_num_seqs}, max_num_batched_tokens: {max_num_batched_tokens},
         enable_prefix_caching: true, num_gpu_blocks: {num_gpu_blocks}}}
workload:
  kind: synthetic
  rate: {rate}
  num_requests: 300
  prefixes: null
perf: {{model: "calibrated:{profile}"}}
seed: 1
"""


def busy_share(profile: Path, rate: float, engine: dict, extra: list[str], work: Path) -> float:
    scenario = work / "scenario.yaml"
    scenario.write_text(SCENARIO.format(profile=profile.resolve(), rate=rate, **engine))
    subprocess.run(["kairos", "simulate", str(scenario), *extra, "-q", "-o", str(work / "out")], check=True,
                   stdout=subprocess.DEVNULL)
    report = json.loads((work / "out" / "report.json").read_text())
    return report["replicas"][0]["busy_s"] / report["summary"]["duration_s"]


def rate_for(profile: Path, share: float, engine: dict, extra: list[str], work: Path) -> float:
    low, high = 0.05, 1.0
    while busy_share(profile, high, engine, extra, work) < share and high < 1e4:
        low, high = high, 2.0 * high
    for _ in range(8):
        mid = (low * high) ** 0.5
        low, high = (mid, high) if busy_share(profile, mid, engine, extra, work) < share else (low, mid)
    return round((low * high) ** 0.5, 2)


def main(argv: list[str]) -> None:
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    if len(argv) < 2:
        sys.exit(__doc__)
    profile = Path(argv[0])
    data = json.loads(profile.read_text())
    settings = data.get("engine", {})
    engine = {"model": data["model"], "block_size": settings["block_size"], "max_num_seqs": settings["max_num_seqs"],
              "max_num_batched_tokens": settings["max_num_batched_tokens"],
              "num_gpu_blocks": settings.get("num_gpu_blocks") or 4096}
    with tempfile.TemporaryDirectory() as tmp:
        print(" ".join(str(rate_for(profile, float(share), engine, extra, Path(tmp))) for share in argv[1:]))


if __name__ == "__main__":
    main(sys.argv[1:])
