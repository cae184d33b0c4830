#!/usr/bin/env bash
# Fidelity of the simulator against measured serving, as recorded in docs/BENCHMARKS.md:
# both shared measured vLLM runs (--perf auto, no per-run constants) and the measured-silicon
# suite (development set H100/H200, test set B200/B300/GB200). Needs the kernels extra.
# Usage: benchmarks/fidelity.sh OUT [DATA_DIR]   (DATA_DIR defaults to ../shared/data)
set -euo pipefail
out=${1:?usage: benchmarks/fidelity.sh OUT [DATA_DIR]}
data=${2:-../shared/data}
mkdir -p "$out"
kairos validate --against "$data/validation/vllm-0.19-rtx4090-llama-3.1-8b" -q -o "$out/rtx4090-llama-3.1-8b"
kairos validate --against "$data/validation/vllm-0.19-rtxpro6000-qwen3-32b-tp2" --gpu rtx-pro-6000 -q \
  -o "$out/rtxpro6000-qwen3-32b-tp2"
kairos validate --suite aiconfigurator --gpu h100,h200 -o "$out/suite-dev"
kairos validate --suite aiconfigurator --gpu b200,b300,gb200 -o "$out/suite-test"
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for run in ("rtx4090-llama-3.1-8b", "rtxpro6000-qwen3-32b-tp2"):
    v = json.loads((out / run / "validation.json").read_text())
    errors = ", ".join(f"{m} {c['mean']['error_pct']:+.1f} %" for m, c in v["metrics"].items())
    print(f"{run} (perf {v['perf']}): mean {errors}")
for split in ("dev", "test"):
    s = json.loads((out / f"suite-{split}" / "suite.json").read_text())["summary"]["all"]
    print(f"suite {split}: {s['simulated']}/{s['rows']} rows, median |TTFT err| "
          f"{s['ttft_ms']['median_abs_error_pct']:.1f} %, median |TPOT err| {s['tpot_ms']['median_abs_error_pct']:.1f} %")
PY
