#!/usr/bin/env bash
# Experiment vllm_sjf: Kairos's SJF against FCFS inside real vLLM (CPU build), through the plug-in
# kairos.integrations.vllm.KairosScheduler (vLLM's --scheduler-cls). Three fresh servers in turn, the
# same Kairos preset shape and engine limits, each loaded by the same open-loop `kairos bench` workload
# (Poisson arrivals near saturation, lognormal output lengths from 2 to 512 tokens, ignore_eos so that
# max_tokens is each request's true length and the oracle predictor is exact):
#   stock: vLLM's own scheduler (FCFS); fcfs: the plug-in running Kairos's fcfs; sjf: the plug-in
#   running Kairos's sjf with the oracle predictor.
# Leaves OUT_DIR/vllm_sjf.json:
#   {"baseline": {"policy": "fcfs", "e2e_p50_ms", "e2e_p99_ms", "ttft_p50_ms", ...}, "policy": {"policy":
#    "sjf", ...}, "stock": {...}, "improvement_pct": p50 E2E gain of sjf over fcfs (positive: better),
#    "stock_vs_plugin_fcfs_pct": p50 E2E of the plug-in's fcfs against stock vLLM's, "machine": {...}}
# and per case OUT_DIR/CASE/ (serve.log, kairos bench's run directory). Each plug-in server's log must
# name the Kairos policy it runs, or the script fails.
#
# Usage: benchmarks/vllm_policies.sh [OUT_DIR]     (default out/vllm_policies; Kairos's venv active)
# Environment: PRESET (small), PORT (8810), NUM_REQUESTS (300), RATE (16 req/s), WARMUP_REQUESTS (16,
#   sent first to each fresh server, not counted), MAX_NUM_SEQS (4: a queue forms), NUM_BLOCKS (64:
#   some preemptions), MAX_NUM_BATCHED_TOKENS (512), BLOCK_SIZE (32), SEED (1), CASES ("stock fcfs sjf"),
#   VLLM_VENV (benchmarks/vllm_cpu/.venv, made by benchmarks/vllm_cpu/setup.sh if missing).
# vLLM's venv imports this checkout's kairos through PYTHONPATH (nothing is installed into it).
# About 4 minutes: each server starts in 35-90 s, each load takes ~25 s.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
OUT=${1:-out/vllm_policies}
PRESET=${PRESET:-small} PORT=${PORT:-8810} N=${NUM_REQUESTS:-300} RATE=${RATE:-16} WARMUP=${WARMUP_REQUESTS:-16}
SEQS=${MAX_NUM_SEQS:-4} BLOCKS=${NUM_BLOCKS:-64} BATCHED=${MAX_NUM_BATCHED_TOKENS:-512} BLOCK=${BLOCK_SIZE:-32}
SEED=${SEED:-1} CASES=${CASES:-stock fcfs sjf}
export VLLM_VENV=${VLLM_VENV:-$HERE/vllm_cpu/.venv}
export PYTHONPATH=$REPO/src${PYTHONPATH:+:$PYTHONPATH}
URL=http://127.0.0.1:$PORT
die() { echo "vllm_policies.sh: $*" >&2; exit 1; }

python -c 'import kairos' 2> /dev/null || die "python cannot import kairos: activate Kairos's venv (. .venv/bin/activate)"
"$HERE/vllm_cpu/setup.sh" "$VLLM_VENV"
"$VLLM_VENV/bin/python" -c 'import kairos.integrations.vllm' 2> /dev/null \
    || die "vLLM's venv ($VLLM_VENV) cannot import kairos.integrations.vllm with PYTHONPATH=$PYTHONPATH"
if [ "$(nproc)" -ge 2 ] && command -v taskset > /dev/null; then PIN=(taskset -c 0); else PIN=(); fi

mkdir -p "$OUT"
MODEL=$OUT/model/$PRESET
python "$HERE/vllm_cpu/make_model.py" "$PRESET" "$MODEL"
VOCAB=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$MODEL/config.json")
WORKLOAD=(--vocab-size "$VOCAB"
          --set 'workload.input_len={kind: lognormal, median: 64, sigma: 0.5, min: 16, max: 256}'
          --set 'workload.output_len={kind: lognormal, median: 32, sigma: 1.2, min: 2, max: 512}')
LIMITS=(--max-num-seqs "$SEQS" --max-num-batched-tokens "$BATCHED" --block-size "$BLOCK" --num-gpu-blocks "$BLOCKS")

PIDF=
trap '[ -z "$PIDF" ] || [ ! -f "$PIDF" ] || "$HERE/vllm_cpu/serve.sh" stop --pid-file "$PIDF"' EXIT
for CASE in $CASES; do
    DIR=$OUT/$CASE
    rm -rf "$DIR"; mkdir -p "$DIR"
    case "$CASE" in
        stock) PLUGIN=();;
        fcfs) PLUGIN=(--scheduler-cls kairos.integrations.vllm.KairosScheduler
                      --additional-config '{"kairos": {"policy": "fcfs"}}');;
        sjf) PLUGIN=(--scheduler-cls kairos.integrations.vllm.KairosScheduler
                     --additional-config '{"kairos": {"policy": "sjf", "predictor": "oracle"}}');;
        *) die "unknown case '$CASE' (stock, fcfs, sjf)";;
    esac
    PIDF=$DIR/serve.pid
    # --max-model-len: vLLM refuses a KV cache smaller than one request of the preset's 4096 positions.
    "$HERE/vllm_cpu/serve.sh" start "$MODEL" --port "$PORT" --max-num-seqs "$SEQS" --max-num-batched-tokens "$BATCHED" \
        --num-blocks "$BLOCKS" --block-size "$BLOCK" --log "$DIR/serve.log" --pid-file "$PIDF" \
        -- --max-model-len 1024 "${PLUGIN[@]}"
    if [ "$CASE" != stock ]; then
        grep -q "Kairos scheduling policy '$CASE'" "$DIR/serve.log" || die "$DIR/serve.log does not show the Kairos policy '$CASE'"
    fi
    "${PIN[@]}" python -m kairos.cli.main bench --url "$URL" --num-requests "$WARMUP" --concurrency "$SEQS" --seed 99 \
        "${WORKLOAD[@]}" -o "$DIR/warmup" > /dev/null
    "${PIN[@]}" python -m kairos.cli.main bench --url "$URL" --num-requests "$N" --rate "$RATE" --seed "$SEED" \
        "${WORKLOAD[@]}" "${LIMITS[@]}" --prefix-caching -o "$DIR/run" | grep -E "Requests|Throughput|Preemptions|TTFT|E2E"
    "$HERE/vllm_cpu/serve.sh" stop --pid-file "$PIDF"
done

python - "$OUT" $CASES <<'PY'
import json, os, platform, sys
out, cases = sys.argv[1], sys.argv[2:]
def row(case: str) -> dict:
    s = json.load(open(os.path.join(out, case, "run", "report.json")))["summary"]
    return {"policy": "fcfs" if case == "stock" else case,
            "scheduler": "vLLM's own" if case == "stock" else "kairos.integrations.vllm.KairosScheduler",
            "completed": s["completed"], "e2e_p50_ms": s["e2e_ms"]["p50"], "e2e_p99_ms": s["e2e_ms"]["p99"],
            "e2e_mean_ms": s["e2e_ms"]["mean"], "ttft_p50_ms": s["ttft_ms"]["p50"], "ttft_p99_ms": s["ttft_ms"]["p99"],
            "tpot_mean_ms": s["tpot_ms"]["mean"], "output_tok_s": s["throughput"]["output_tokens_per_s"],
            "preemptions": s["preemptions"]}
rows = {case: row(case) for case in cases}
result: dict = {"experiment": "vllm_sjf"}
if "fcfs" in rows:
    result["baseline"] = rows["fcfs"]
if "sjf" in rows:
    result["policy"] = rows["sjf"]
if "stock" in rows:
    result["stock"] = rows["stock"]
def gain(base: str, new: str) -> float:
    return round(100.0 * (rows[base]["e2e_p50_ms"] - rows[new]["e2e_p50_ms"]) / rows[base]["e2e_p50_ms"], 2)
if {"fcfs", "sjf"} <= rows.keys():
    result["improvement_pct"] = gain("fcfs", "sjf")
if {"stock", "fcfs"} <= rows.keys():
    result["stock_vs_plugin_fcfs_pct"] = gain("stock", "fcfs")
result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()}
with open(os.path.join(out, "vllm_sjf.json"), "w") as f:
    json.dump(result, f, indent=2)
for case, r in rows.items():
    print(f"{case:6s} E2E p50 {r['e2e_p50_ms']:8.1f} ms  p99 {r['e2e_p99_ms']:8.1f} ms  TTFT p50 {r['ttft_p50_ms']:7.1f} ms"
          f"  {r['output_tok_s']:6.0f} out tok/s  preemptions {r['preemptions']}")
for key in ("improvement_pct", "stock_vs_plugin_fcfs_pct"):
    if key in result:
        print(f"{key}: {result[key]}")
print(f"wrote {os.path.join(out, 'vllm_sjf.json')}")
PY
