#!/usr/bin/env bash
# Kairos's twin of real vLLM on this machine: serve a preset's shape with vLLM (CPU), calibrate it
# black-box (`kairos calibrate --url`), load it with `kairos bench` in four cases and replay each
# with the calibrated profile (`kairos validate`). Writes OUT_DIR/summary.json:
#   {"cases": {NAME: {"ttft_ms": err_pct, "tpot_ms": err_pct, "e2e_ms": err_pct,
#                     "prefix_cache_hit_rate": {...}, "preemptions": {...}, "busy_share": ...,
#                     "measured": {...}, "simulated": {...}}}, "bars": {...}, "settings": {...}}
# (error = 100 x (simulated - measured) / measured, on the means; the hit rate's in points).
#
# Cases (300 requests each; lognormal prompts median 200, outputs median 64, as benchmarks/vllm_cpu/e2e.sh):
#   light       Poisson, no shared prompts, the engine about 30 % busy
#   busy        Poisson, no shared prompts, about 80 % busy
#   overloaded  Poisson at twice busy's rate on a server restarted with SMALL_BLOCKS KV blocks: queues, preemptions
#   prefix      Poisson at busy's rate, each prompt after one of 4 shared 512-token system prompts
# The rates for 30 % and 80 % come from the calibrated profile (benchmarks/vllm_fidelity_rates.py), so
# the loads follow the machine's speed; LIGHT_RATE, BUSY_RATE, OVERLOAD_RATE, PREFIX_RATE override them.
#
# Usage: benchmarks/vllm_fidelity.sh OUT_DIR      (Kairos's venv active; vLLM's from benchmarks/vllm_cpu/setup.sh)
# Environment: PRESET (small), PORT (8800), NUM_REQUESTS (300), NUM_BLOCKS (4096), SMALL_BLOCKS (64: 2,048 tokens, 8 typical requests),
#              LIGHT_RATE, BUSY_RATE, OVERLOAD_RATE, PREFIX_RATE, CASES (all four),
#              CALIBRATE_REPEATS (3), MAX_NUM_SEQS (64), MAX_NUM_BATCHED_TOKENS (512), BLOCK_SIZE (32).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
OUT=$1
PRESET=${PRESET:-small} PORT=${PORT:-8800} N=${NUM_REQUESTS:-300}
BLOCKS=${NUM_BLOCKS:-4096} SMALL_BLOCKS=${SMALL_BLOCKS:-64}
SEQS=${MAX_NUM_SEQS:-64} BATCHED=${MAX_NUM_BATCHED_TOKENS:-512} BLOCK=${BLOCK_SIZE:-32}
CASES=${CASES:-light busy overloaded prefix}
declare -A RATE=([light]=${LIGHT_RATE:-} [busy]=${BUSY_RATE:-} [overloaded]=${OVERLOAD_RATE:-} [prefix]=${PREFIX_RATE:-})
declare -A SEED=([light]=1 [busy]=2 [overloaded]=3 [prefix]=4)
URL=http://127.0.0.1:$PORT
command -v kairos > /dev/null || { echo "kairos not found: activate Kairos's venv (. .venv/bin/activate)" >&2; exit 1; }
for name in $CASES; do
    [ -v "RATE[$name]" ] || { echo "unknown case '$name' (light, busy, overloaded, prefix)" >&2; exit 2; }
done
mkdir -p "$OUT"
if [ "$(nproc)" -ge 2 ] && command -v taskset > /dev/null; then PIN=(taskset -c 0); else PIN=(); fi

MODEL=$OUT/model/$PRESET
python "$HERE/vllm_cpu/make_model.py" "$PRESET" "$MODEL"
VOCAB=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$MODEL/config.json")
LENGTHS=(--set 'workload.input_len={kind: lognormal, median: 200, sigma: 0.6, min: 16, max: 1024}'
         --set 'workload.output_len={kind: lognormal, median: 64, sigma: 0.6, min: 4, max: 256}')

start() {  # start NUM_BLOCKS: a vLLM server with that KV capacity
    # vLLM refuses a KV cache smaller than one request of max_model_len: the workload's longest is 1,280 (and vLLM keeps one block back).
    "$HERE/vllm_cpu/serve.sh" start "$MODEL" --port "$PORT" --max-num-seqs "$SEQS" --max-num-batched-tokens "$BATCHED" \
        --num-blocks "$1" --block-size "$BLOCK" --log "$OUT/serve-$1.log" --pid-file "$OUT/serve.pid" \
        -- --max-model-len 1536
}
stop() { "$HERE/vllm_cpu/serve.sh" stop --pid-file "$OUT/serve.pid"; }
trap 'stop 2> /dev/null || true' EXIT

run_case() {  # run_case NAME NUM_BLOCKS: bench the running server, then replay the run
    local name=$1 blocks=$2 prefixes='workload.prefixes=null'
    [ "$name" = prefix ] && prefixes='workload.prefixes={num: 4, length: 512}'
    rm -rf "$OUT/$name"
    # A seed of its own per case: the server's prefix cache still holds the prompts of the cases before.
    # --warm-up: a server just started runs its first steps of each size slower (vLLM on CPU builds
    # per-shape kernel state), and `overloaded` starts one.
    "${PIN[@]}" kairos bench --url "$URL" --num-requests "$N" --rate "${RATE[$name]}" --seed "${SEED[$name]}" \
        --vocab-size "$VOCAB" \
        "${LENGTHS[@]}" --set "$prefixes" --max-num-seqs "$SEQS" --max-num-batched-tokens "$BATCHED" \
        --block-size "$BLOCK" --num-gpu-blocks "$blocks" --prefix-caching --warm-up -q -o "$OUT/$name/run"
    kairos validate --against "$OUT/$name/run" --perf "calibrated:$OUT/profile.json" -o "$OUT/$name"
}

set_rates() {  # the rates not given, from the profile
    read -r light busy < <(python "$HERE/vllm_fidelity_rates.py" "$OUT/profile.json" 0.3 0.8 -- "${LENGTHS[@]}")
    RATE[light]=${RATE[light]:-$light}
    RATE[busy]=${RATE[busy]:-$busy}
    RATE[overloaded]=${RATE[overloaded]:-$(python -c "print(round(2 * $busy, 2))")}
    RATE[prefix]=${RATE[prefix]:-$busy}
    echo "rates (req/s): light ${RATE[light]}, busy ${RATE[busy]}, overloaded ${RATE[overloaded]}, prefix ${RATE[prefix]}"
}

wanted() { [[ " $CASES " == *" $1 "* ]]; }
if wanted light || wanted busy || wanted prefix || [ ! -f "$OUT/profile.json" ]; then
    start "$BLOCKS"
    [ -f "$OUT/profile.json" ] || "${PIN[@]}" kairos calibrate --url "$URL" --model-config "$MODEL" \
        --max-num-seqs "$SEQS" --max-num-batched-tokens "$BATCHED" --repeats "${CALIBRATE_REPEATS:-3}" \
        -o "$OUT/profile.json"
    set_rates
    for name in light busy prefix; do wanted "$name" && run_case "$name" "$BLOCKS"; done
    stop
fi
if wanted overloaded; then
    [ -n "${RATE[overloaded]}" ] || set_rates
    start "$SMALL_BLOCKS"
    run_case overloaded "$SMALL_BLOCKS"
    stop
fi
trap - EXIT

python "$HERE/vllm_fidelity_summary.py" "$OUT" $CASES
