#!/usr/bin/env bash
# Twin fidelity on this machine: serve the tiny model for real, calibrate the served
# engine, load it with 200 Poisson requests, then replay that run in simulation with
# the calibrated profile and compare. Leaves OUT_DIR/validation.json.
#
# Usage: benchmarks/twin_fidelity.sh [OUT_DIR]     (needs `pip install -e '.[engine]'`)
set -euo pipefail
OUT=${1:-out/twin}
PORT=${PORT:-8765}
RATE=${RATE:-10}
URL="http://127.0.0.1:$PORT"
mkdir -p "$OUT"
rm -rf "$OUT/run"

# The engine process on core 1, alone; the HTTP front-end, calibration and load generator on
# core 0 (where the machine has two cores): anywhere else they preempt the engine mid-step.
if [ "$(nproc)" -ge 2 ] && command -v taskset > /dev/null; then
    PIN=(taskset -c 0); ENGINE_CPUS=(--engine-cpus 1)
else
    PIN=(); ENGINE_CPUS=()
fi
# One torch thread: the engine has one core. The idle engine
# busy-polls: a vCPU that sleeps between requests runs the next steps slower for a while.
# Large attention buffers: keep glibc from mapping and unmapping them every step (page faults).
# The reference step, timed every 100 ms while idle (200 ms while busy), tells `kairos validate` how much slower
# or faster this shared VM ran during the benchmark than during calibration.
MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 \
    "${PIN[@]}" kairos serve --model tiny --threads 1 "${ENGINE_CPUS[@]}" --busy-poll-ms 1000 --reference-step-ms 100 --port "$PORT" \
    --max-num-seqs 64 --max-num-batched-tokens 512 --num-blocks 4096 > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 150); do curl -sf "$URL/health" > /dev/null && break; sleep 0.2; done
curl -sf "$URL/health" > /dev/null || { echo "server did not start; see $OUT/serve.log" >&2; exit 1; }

"${PIN[@]}" kairos calibrate --url "$URL" -o "$OUT/profile.json"
"${PIN[@]}" kairos bench --url "$URL" --num-requests 200 --rate "$RATE" --seed 1 --vocab-size 512 \
    --set 'workload.input_len={kind: lognormal, median: 200, sigma: 0.6, min: 16, max: 1024}' \
    --set 'workload.output_len={kind: lognormal, median: 64, sigma: 0.6, min: 4, max: 256}' \
    -o "$OUT/run"
kill $SERVER; wait $SERVER 2>/dev/null || true
trap - EXIT

kairos validate --against "$OUT/run" --perf "calibrated:$OUT/profile.json" -o "$OUT"
