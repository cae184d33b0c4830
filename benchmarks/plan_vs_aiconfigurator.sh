#!/usr/bin/env bash
# Ask aiconfigurator and `kairos plan` the same question (issue 21 item 4): aiconfigurator's CLI-guide
# example, Qwen3-32B on 32 H200s with vLLM, ISL 3000 / OSL 512, TTFT 1000 ms, TPOT 10 ms.
#
# Usage: benchmarks/plan_vs_aiconfigurator.sh OUT
#   AIC_VENV    aiconfigurator's venv (default benchmarks/aiconfigurator_peer/.venv, made by its setup.sh)
#   KAIROS_PY   Kairos's interpreter (default .venv/bin/python of this checkout, else /work/main/.venv/bin/python)
#   TRIALS      kairos plan --search trials (default 24)
#
# Writes OUT/aiconfigurator.txt (its report, exactly as printed), OUT/aiconfigurator_results/ (the same run
# again with --save-dir: Pareto CSVs, launch files), OUT/kairos/ (each kairos plan run's log and plan.json),
# OUT/kairos.json, OUT/compare.json and OUT/compare.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -eq 1 ] || { echo "usage: $0 OUT" >&2; exit 2; }
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
AIC_VENV=${AIC_VENV:-$ROOT/benchmarks/aiconfigurator_peer/.venv}
if [ -z "${KAIROS_PY:-}" ]; then
    KAIROS_PY=$ROOT/.venv/bin/python
    [ -x "$KAIROS_PY" ] || KAIROS_PY=/work/main/.venv/bin/python
fi
[ -x "$KAIROS_PY" ] || { echo "no Kairos interpreter at $KAIROS_PY: set KAIROS_PY" >&2; exit 1; }

"$ROOT/benchmarks/aiconfigurator_peer/setup.sh" "$AIC_VENV" >&2
AIC=(--model Qwen/Qwen3-32B --total-gpus 32 --system h200_sxm --backend vllm --ttft 1000 --tpot 10 --isl 3000 --osl 512)

now() { date +%s.%N; }
# The issue's command as given, timed; then once more with --save-dir for its CSVs (same search, files added).
t0=$(now); set +e
"$AIC_VENV/bin/aiconfigurator" cli default "${AIC[@]}" > "$OUT/aiconfigurator.txt" 2>&1; rc=$?
t1=$(now)
rm -rf "$OUT/aiconfigurator_results"
"$AIC_VENV/bin/aiconfigurator" cli default "${AIC[@]}" --save-dir "$OUT/aiconfigurator_results" > "$OUT/aiconfigurator_save.txt" 2>&1
t2=$(now); set -e
[ $rc -eq 0 ] || echo "aiconfigurator exited $rc: see $OUT/aiconfigurator.txt" >&2
VERSION=$("$AIC_VENV/bin/python" -c 'from importlib.metadata import version; print(version("aiconfigurator"))')
"$KAIROS_PY" - "$OUT" "$rc" "$t0" "$t1" "$t2" "$VERSION" "${AIC[*]}" <<'PY'
import json, sys
out, rc, t0, t1, t2, version, args = sys.argv[1:]
json.dump({"command": f"aiconfigurator cli default {args}", "version": version, "rc": int(rc),
           "wall_s": round(float(t1) - float(t0), 2),
           "save_command": f"aiconfigurator cli default {args} --save-dir OUT/aiconfigurator_results",
           "save_wall_s": round(float(t2) - float(t1), 2)}, open(f"{out}/aiconfigurator_meta.json", "w"), indent=2)
PY

cd "$ROOT"
PYTHONPATH=$ROOT/src "$KAIROS_PY" benchmarks/aiconfigurator_cli/kairos_runs.py "$OUT" --trials "${TRIALS:-24}"
"$KAIROS_PY" benchmarks/aiconfigurator_cli/compare.py "$OUT"
