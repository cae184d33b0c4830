#!/usr/bin/env bash
# Fidelity of the simulator against measured serving, as recorded in docs/BENCHMARKS.md:
# both shared measured vLLM runs (--perf auto, no per-run constants) and the measured-silicon
# suite (development set H100/H200, test set B200/B300/GB200). Needs the kernels extra. Where
# benchmarks/aiconfigurator_peer/setup.sh has made aiconfigurator's venv, the suite also puts
# aiconfigurator's own estimate of each row beside ours (about 20 min more per set on 2 cores).
# Usage: benchmarks/fidelity.sh OUT [DATA_DIR]   (DATA_DIR defaults to ../shared/data)
set -euo pipefail
out=${1:?usage: benchmarks/fidelity.sh OUT [DATA_DIR]}
data=${2:-../shared/data}
mkdir -p "$out"
kairos validate --against "$data/validation/vllm-0.19-rtx4090-llama-3.1-8b" -q -o "$out/rtx4090-llama-3.1-8b"
kairos validate --against "$data/validation/vllm-0.19-rtxpro6000-qwen3-32b-tp2" --gpu rtx-pro-6000 -q \
  -o "$out/rtxpro6000-qwen3-32b-tp2"
peer_python=$(dirname "$0")/aiconfigurator_peer/.venv/bin/python
for split in dev:h100,h200 test:b200,b300,gb200; do
  name=${split%%:*} gpus=${split#*:}
  peer=()
  if [ -x "$peer_python" ]; then
    "$peer_python" "$(dirname "$0")/aiconfigurator_peer/estimate.py" --backend vllm --gpu "$gpus" \
      -o "$out/peer-$name.json"
    peer=(--peer "$out/peer-$name.json")
  fi
  kairos validate --suite aiconfigurator --gpu "$gpus" "${peer[@]}" -o "$out/suite-$name"
done
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
    if "head_to_head" in s:
        h = s["head_to_head"]
        print(f"  on the {h['rows']} rows aiconfigurator also estimated: TTFT kairos "
              f"{h['kairos_ttft_ms']['median_abs_error_pct']:.1f} % vs {h['aiconfigurator_ttft_ms']['median_abs_error_pct']:.1f} %, "
              f"TPOT {h['kairos_tpot_ms']['median_abs_error_pct']:.1f} % vs {h['aiconfigurator_tpot_ms']['median_abs_error_pct']:.1f} %")
PY
