#!/usr/bin/env bash
# The race: `kairos serve`'s own engine against real vLLM (CPU build) on this machine, same model shape,
# same engine limits, same pinning, same saturating closed-loop workload. Leaves OUT_DIR/race.json:
#   {"kairos": {"output_tok_s", "ttft_ms_mean", "tpot_ms_mean"}, "vllm": {...},
#    "ratio": kairos / vllm output tok/s (medians), "runs": [...], "machine": {...}}
#
# Usage: benchmarks/engine_vs_vllm.sh [OUT_DIR]     (default out/race; Kairos's venv active)
# Environment: RUNS (3: each run serves vLLM then Kairos, or Kairos then vLLM, alternating; medians
#   are reported), NUM_REQUESTS (400), WARMUP_REQUESTS (64, sent first to each fresh server, not
#   counted), CONCURRENCY (64), PRESET (small), PORT (8820), NUM_BLOCKS (4096), MAX_NUM_SEQS (64),
#   MAX_NUM_BATCHED_TOKENS (512), BLOCK_SIZE (32), ATTENTION (auto: kairos serve --attention),
#   VLLM_VENV (benchmarks/vllm_cpu/.venv: see benchmarks/vllm_cpu/setup.sh).
# Pinning (two or more cores): both engines compute on core 1 with one thread (vLLM's worker; kairos
# serve's engine process); the HTTP servers and the load generator on core 0, with vLLM's EngineCore
# (scheduler) beside them (ENGINE_CORE_CPUS, default 0): vLLM's faster split on this machine, where
# the EngineCore's wait on its worker would otherwise take turns with the worker's compute.
# The two servers never run at once.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-out/race}
RUNS=${RUNS:-3} N=${NUM_REQUESTS:-400} WARMUP=${WARMUP_REQUESTS:-64} CONC=${CONCURRENCY:-64}
PRESET=${PRESET:-small} PORT=${PORT:-8820} BLOCKS=${NUM_BLOCKS:-4096} SEQS=${MAX_NUM_SEQS:-64}
BATCHED=${MAX_NUM_BATCHED_TOKENS:-512} BLOCK=${BLOCK_SIZE:-32} ATTENTION=${ATTENTION:-auto}
export VLLM_VENV=${VLLM_VENV:-$HERE/vllm_cpu/.venv}
export ENGINE_CORE_CPUS=${ENGINE_CORE_CPUS:-0}
URL=http://127.0.0.1:$PORT
die() { echo "engine_vs_vllm.sh: $*" >&2; exit 1; }

command -v kairos > /dev/null || die "kairos not found: activate Kairos's venv (. .venv/bin/activate)"
[ -x "$VLLM_VENV/bin/python" ] || die "no vLLM venv at $VLLM_VENV: run benchmarks/vllm_cpu/setup.sh or set VLLM_VENV"
"$VLLM_VENV/bin/python" -c 'import vllm' 2> /dev/null || die "$VLLM_VENV does not import vllm: rerun benchmarks/vllm_cpu/setup.sh"
curl -sf "$URL/health" > /dev/null 2>&1 && die "port $PORT already answers /health: stop that server or set PORT"
mkdir -p "$OUT"
if [ "$(nproc)" -ge 2 ] && command -v taskset > /dev/null; then
    PIN=(taskset -c 0); ENGINE_CPUS=(--engine-cpus 1)
else
    PIN=(); ENGINE_CPUS=()
fi

python "$HERE/vllm_cpu/make_model.py" "$PRESET" "$OUT/model/$PRESET" > /dev/null
VOCAB=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$OUT/model/$PRESET/config.json")
LIMITS=(--max-num-seqs "$SEQS" --max-num-batched-tokens "$BATCHED" --block-size "$BLOCK")

SERVER_PID=
stop_server() {
    if [ -f "$OUT/vllm.pid" ]; then "$HERE/vllm_cpu/serve.sh" stop --pid-file "$OUT/vllm.pid" > /dev/null || true; fi
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2> /dev/null || true
        wait "$SERVER_PID" 2> /dev/null || true
        SERVER_PID=
    fi
}
trap stop_server EXIT

start_vllm() {
    "$HERE/vllm_cpu/serve.sh" start "$OUT/model/$PRESET" --port "$PORT" "${LIMITS[@]}" --num-blocks "$BLOCKS" \
        --log "$OUT/$1/serve.log" --pid-file "$OUT/vllm.pid" > "$OUT/$1/start.log"
}

start_kairos() {
    "${PIN[@]}" kairos serve --model "$PRESET" --port "$PORT" "${LIMITS[@]}" --num-blocks "$BLOCKS" \
        --threads 1 "${ENGINE_CPUS[@]}" --attention "$ATTENTION" > "$OUT/$1/serve.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 600); do
        curl -sf "$URL/health" > /dev/null 2>&1 && return 0
        kill -0 "$SERVER_PID" 2> /dev/null || { tail -n 5 "$OUT/$1/serve.log" >&2; die "kairos serve exited; see $OUT/$1/serve.log"; }
        sleep 0.2
    done
    die "kairos serve gave no /health in 120 s; see $OUT/$1/serve.log"
}

bench() {  # bench NUM_REQUESTS SEED RUN_DIR
    rm -rf "$3"
    "${PIN[@]}" kairos bench --url "$URL" --num-requests "$1" --rate inf --concurrency "$CONC" --seed "$2" \
        --vocab-size "$VOCAB" \
        --set 'workload.input_len={kind: lognormal, median: 200, sigma: 0.6, min: 16, max: 1024}' \
        --set 'workload.output_len={kind: lognormal, median: 64, sigma: 0.6, min: 4, max: 256}' \
        "${LIMITS[@]}" --num-gpu-blocks "$BLOCKS" --prefix-caching -q -o "$3"
}

one() {  # one ENGINE RUN_INDEX
    local dir="run$2/$1"
    mkdir -p "$OUT/$dir"
    uptime > "$OUT/$dir/load_before.txt"
    echo "run $2: $1 starting ($(uptime | sed 's/.*load/load/'))"
    "start_$1" "$dir"
    bench "$WARMUP" 7 "$OUT/$dir/warmup" > /dev/null
    bench "$N" 1 "$OUT/$dir/bench" > /dev/null
    [ "$1" = kairos ] && curl -sf "$URL/kairos/engine" > "$OUT/$dir/engine.json"
    uptime > "$OUT/$dir/load_after.txt"
    stop_server
    python -c 'import json, sys
s = json.load(open(sys.argv[1]))["summary"]
tok, ttft, tpot = s["throughput"]["output_tokens_per_s"], s["ttft_ms"]["mean"], s["tpot_ms"]["mean"]
print(f"run {sys.argv[2]}: {sys.argv[3]:6s} {tok:8.1f} output tok/s, TTFT {ttft:.0f} ms, TPOT {tpot:.1f} ms")' \
        "$OUT/$dir/bench/report.json" "$2" "$1"
}

for i in $(seq 1 "$RUNS"); do
    if [ $((i % 2)) = 1 ]; then one vllm "$i"; one kairos "$i"; else one kairos "$i"; one vllm "$i"; fi
done

python - "$OUT" "$RUNS" "$VLLM_VENV" <<'PY'
import json, os, platform, statistics, subprocess, sys
from pathlib import Path

out, runs, venv = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
KEYS = {"output_tok_s": ("throughput", "output_tokens_per_s"), "ttft_ms_mean": ("ttft_ms", "mean"),
        "tpot_ms_mean": ("tpot_ms", "mean")}
records = []
for i in range(1, runs + 1):
    run = {"run": i}
    for engine in ("vllm", "kairos"):
        summary = json.loads((out / f"run{i}/{engine}/bench/report.json").read_text())["summary"]
        run[engine] = {key: summary[a][b] for key, (a, b) in KEYS.items()}
        run[engine]["completed"] = summary["completed"]
        run[engine]["load_before"] = (out / f"run{i}/{engine}/load_before.txt").read_text().strip()
    run["ratio"] = run["kairos"]["output_tok_s"] / run["vllm"]["output_tok_s"]
    records.append(run)
medians = {e: {k: statistics.median(r[e][k] for r in records) for k in KEYS} for e in ("kairos", "vllm")}
engine = json.loads((out / "run1/kairos/engine.json").read_text())
cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
           platform.processor())
vllm_version = subprocess.run([f"{venv}/bin/python", "-c", "import importlib.metadata as m; print(m.version('vllm-cpu'))"],
                              capture_output=True, text=True).stdout.strip()
race = {**medians, "ratio": medians["kairos"]["output_tok_s"] / medians["vllm"]["output_tok_s"],
        "runs": records,
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(), "vllm": vllm_version,
                    "kairos_attention": engine.get("attention"), "kairos_dtype": engine.get("dtype"),
                    "load_at_end": os.getloadavg()}}
(out / "race.json").write_text(json.dumps(race, indent=2) + "\n")
for r in records:
    print(f"run {r['run']}: kairos {r['kairos']['output_tok_s']:.0f} tok/s, vllm {r['vllm']['output_tok_s']:.0f} tok/s,"
          f" ratio {r['ratio']:.2f}")
print(f"median: kairos {medians['kairos']['output_tok_s']:.0f} tok/s, vllm {medians['vllm']['output_tok_s']:.0f} tok/s,"
      f" ratio {race['ratio']:.2f} -> {out / 'race.json'}")
PY
