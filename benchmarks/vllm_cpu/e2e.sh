#!/usr/bin/env bash
# End to end on this machine: a Kairos preset's shape served by real vLLM (CPU), loaded by `kairos bench`
# with the issue-18 workload (pinned to core 0, beside vLLM's front-end; vLLM's compute on core 1).
# Leaves in OUT_DIR: serve.log, run/ (kairos bench's run directory), metrics_before.txt and
# metrics_after.txt (vLLM's /metrics), and prints the vllm: counters that moved during the run.
#
# Usage: benchmarks/vllm_cpu/e2e.sh [OUT_DIR]      (default out/vllm_cpu/e2e; Kairos's venv active)
# Environment: PRESET (small), PORT (8800), NUM_REQUESTS (300), RATE (30), NUM_BLOCKS (4096),
#              MAX_NUM_SEQS (64), MAX_NUM_BATCHED_TOKENS (512), BLOCK_SIZE (32).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-out/vllm_cpu/e2e}
PRESET=${PRESET:-small} PORT=${PORT:-8800} N=${NUM_REQUESTS:-300} RATE=${RATE:-30} BLOCKS=${NUM_BLOCKS:-4096}
SEQS=${MAX_NUM_SEQS:-64} BATCHED=${MAX_NUM_BATCHED_TOKENS:-512} BLOCK=${BLOCK_SIZE:-32}
URL=http://127.0.0.1:$PORT
command -v kairos > /dev/null || { echo "kairos not found: activate Kairos's venv (. .venv/bin/activate)" >&2; exit 1; }
mkdir -p "$OUT"
rm -rf "$OUT/run"

python "$HERE/make_model.py" "$PRESET" "$OUT/model/$PRESET"
VOCAB=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$OUT/model/$PRESET/config.json")
"$HERE/serve.sh" start "$OUT/model/$PRESET" --port "$PORT" --max-num-seqs "$SEQS" --max-num-batched-tokens "$BATCHED" \
    --num-blocks "$BLOCKS" --block-size "$BLOCK" --log "$OUT/serve.log" --pid-file "$OUT/serve.pid"
trap '"$HERE/serve.sh" stop --pid-file "$OUT/serve.pid"' EXIT

if [ "$(nproc)" -ge 2 ] && command -v taskset > /dev/null; then PIN=(taskset -c 0); else PIN=(); fi
curl -sf "$URL/metrics" > "$OUT/metrics_before.txt"
"${PIN[@]}" kairos bench --url "$URL" --num-requests "$N" --rate "$RATE" --seed 1 --vocab-size "$VOCAB" \
    --set 'workload.input_len={kind: lognormal, median: 200, sigma: 0.6, min: 16, max: 1024}' \
    --set 'workload.output_len={kind: lognormal, median: 64, sigma: 0.6, min: 4, max: 256}' \
    --max-num-seqs "$SEQS" --max-num-batched-tokens "$BATCHED" --block-size "$BLOCK" --num-gpu-blocks "$BLOCKS" \
    --prefix-caching -o "$OUT/run"
curl -sf "$URL/metrics" > "$OUT/metrics_after.txt"

# vllm: counters (and histogram _sum/_count) that moved, summed over their labels.
python - "$OUT/metrics_before.txt" "$OUT/metrics_after.txt" <<'PY'
import re, sys
def read(path: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for line in open(path):
        m = re.match(r"(vllm:\w+)(?:\{[^}]*\})? (\S+)$", line.strip())
        if m and not m.group(1).endswith("_created"):
            totals[m.group(1)] = totals.get(m.group(1), 0.0) + float(m.group(2))
    return totals
before, after = read(sys.argv[1]), read(sys.argv[2])
moved = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0) and "_bucket" not in k}
for name, delta in sorted(moved.items()):
    print(f"  {name:60s} {delta:g}")
hits, queries = moved.get("vllm:prefix_cache_hits_total", 0.0), moved.get("vllm:prefix_cache_queries_total", 0.0)
if queries:
    print(f"vLLM prefix cache hit rate during the run: {hits / queries:.1%} ({hits:g}/{queries:g} tokens)")
PY
