#!/usr/bin/env bash
# Start and stop a real vLLM (CPU) server on this machine, pinned like benchmarks/twin_fidelity.sh pins
# `kairos serve`: the engine (vLLM's EngineCore process, the scheduler, and its worker process, the model
# runner with one OpenMP thread) on core 1; the HTTP front-end (API server) and your load generator on core 0.
# The EngineCore and the worker take turns (one schedules while the other waits, then the other way
# round), so they share a core at little cost, as the scheduler and the model runner of kairos serve do.
#
# Usage:
#   benchmarks/vllm_cpu/serve.sh start MODEL_DIR [options] [-- extra vllm args]
#       --port N                    (8000)
#       --max-num-seqs N            (64)
#       --max-num-batched-tokens N  (512)
#       --num-blocks N              KV capacity in blocks (--num-gpu-blocks-override)
#       --kv-gib N                  KV capacity in whole GiB (VLLM_CPU_KVCACHE_SPACE)
#                                   (neither: 256 MiB, as kairos serve on CPU; vLLM's own default, 92% of RAM, fails)
#       --block-size N              (32: vLLM's CPU attention takes multiples of 32 only, so give
#                                   kairos serve --block-size 32 too; its default is 16)
#       --prefix-caching | --no-prefix-caching   (on)
#       --dtype D                   (float32: what kairos serve runs a preset in on CPU)
#       --served-model-name NAME    (MODEL_DIR's base name)
#       --log FILE                  (out/vllm_cpu/serve-PORT.log)
#       --pid-file FILE             (out/vllm_cpu/serve-PORT.pid)
#       --timeout S                 seconds to wait for /health (600; the first start compiles ~1 min)
#   benchmarks/vllm_cpu/serve.sh stop   [--port N | --pid-file FILE]   (stops the whole process group)
#   benchmarks/vllm_cpu/serve.sh status [--port N | --pid-file FILE]
# Environment: VLLM_VENV (benchmarks/vllm_cpu/.venv), FRONT_CPUS (0), ENGINE_CPUS (1),
#              ENGINE_CORE_CPUS (ENGINE_CPUS; FRONT_CPUS keeps the scheduler beside the API server).
# MODEL_DIR comes from make_model.py; weights are random (--load-format dummy), prompts are token ids.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VENV=${VLLM_VENV:-$HERE/.venv}
FRONT_CPUS=${FRONT_CPUS:-0}
ENGINE_CPUS=${ENGINE_CPUS:-1}
ENGINE_CORE_CPUS=${ENGINE_CORE_CPUS:-$ENGINE_CPUS}
die() { echo "serve.sh: $*" >&2; exit 1; }

CMD=${1:-}; [ $# -gt 0 ] && shift
case "$CMD" in start|stop|status) ;; *) die "usage: serve.sh start MODEL_DIR [options] | stop | status (see the top of $0)";; esac
MODEL=
if [ "$CMD" = start ]; then
    [ $# -gt 0 ] || die "start needs MODEL_DIR (write one with make_model.py)"
    MODEL=$1; shift
fi
PORT=8000 SEQS=64 BATCHED=512 BLOCKS= KV_GIB= BLOCK=32 PREFIX=1 DTYPE=float32 NAME= LOG= PIDF= TIMEOUT=600
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --port) PORT=$2; shift 2;;
        --max-num-seqs) SEQS=$2; shift 2;;
        --max-num-batched-tokens) BATCHED=$2; shift 2;;
        --num-blocks) BLOCKS=$2; shift 2;;
        --kv-gib) KV_GIB=$2; shift 2;;
        --block-size) BLOCK=$2; shift 2;;
        --prefix-caching) PREFIX=1; shift;;
        --no-prefix-caching) PREFIX=0; shift;;
        --dtype) DTYPE=$2; shift 2;;
        --served-model-name) NAME=$2; shift 2;;
        --log) LOG=$2; shift 2;;
        --pid-file) PIDF=$2; shift 2;;
        --timeout) TIMEOUT=$2; shift 2;;
        --) shift; EXTRA=("$@"); break;;
        *) die "unknown option '$1' (see the top of $0)";;
    esac
done
RUN_DIR=$REPO/out/vllm_cpu
LOG=${LOG:-$RUN_DIR/serve-$PORT.log}
PIDF=${PIDF:-$RUN_DIR/serve-$PORT.pid}
URL=http://127.0.0.1:$PORT

alive() { [ -f "$PIDF" ] && kill -0 -- "-$(cat "$PIDF")" 2> /dev/null; }

if [ "$CMD" = status ]; then
    if alive; then
        echo "running: process group $(cat "$PIDF"); /health $(curl -s -o /dev/null -w '%{http_code}' "$URL/health" || true)"
    else
        echo "not running ($PIDF)"; exit 1
    fi
    exit 0
fi

if [ "$CMD" = stop ]; then
    [ -f "$PIDF" ] || die "no pid file $PIDF: nothing to stop"
    PGID=$(cat "$PIDF")
    if kill -TERM -- "-$PGID" 2> /dev/null; then
        for _ in $(seq 1 150); do kill -0 -- "-$PGID" 2> /dev/null || break; sleep 0.2; done
        if kill -0 -- "-$PGID" 2> /dev/null; then
            echo "process group $PGID still alive after 30 s: SIGKILL" >&2
            kill -KILL -- "-$PGID" 2> /dev/null || true
        fi
    fi
    rm -f "$PIDF"
    echo "stopped process group $PGID"
    exit 0
fi

# start
[ -x "$VENV/bin/python" ] || die "vLLM venv missing: run benchmarks/vllm_cpu/setup.sh"
[ -f "$MODEL/config.json" ] || die "$MODEL/config.json missing: run benchmarks/vllm_cpu/make_model.py PRESET $MODEL"
[ -z "$BLOCKS" ] || [ -z "$KV_GIB" ] || die "give the KV capacity as --num-blocks or --kv-gib, not both"
[ -z "$KV_GIB" ] || [[ "$KV_GIB" =~ ^[0-9]+$ ]] || die "--kv-gib takes whole GiB (VLLM_CPU_KVCACHE_SPACE is an integer), got '$KV_GIB'"
[ $((BLOCK % 32)) = 0 ] || die "--block-size $BLOCK: vLLM's CPU attention needs a multiple of 32"
alive && die "already running (process group $(cat "$PIDF")); stop it first"
curl -sf "$URL/health" > /dev/null 2>&1 && die "port $PORT already answers /health: another server is there"
mkdir -p "$(dirname "$LOG")" "$(dirname "$PIDF")"

ARGS=(--model "$MODEL" --served-model-name "${NAME:-$(basename "$MODEL")}" --host 127.0.0.1 --port "$PORT"
      --load-format dummy --skip-tokenizer-init --dtype "$DTYPE" --block-size "$BLOCK"
      --max-num-seqs "$SEQS" --max-num-batched-tokens "$BATCHED")
[ "$PREFIX" = 1 ] && ARGS+=(--enable-prefix-caching) || ARGS+=(--no-enable-prefix-caching)
ENVS=()
# vLLM CPU sizes the KV cache from an explicit byte count, else from --gpu-memory-utilization (0.92) of
# all RAM, which fails here: always give it one. For a block count, the bytes of exactly that many blocks.
if [ -n "$KV_GIB" ]; then
    ENVS+=("VLLM_CPU_KVCACHE_SPACE=$KV_GIB")
elif [ -n "$BLOCKS" ]; then
    BLOCK_BYTES=$(python3 -c 'import json, sys
c = json.load(open(sys.argv[1])); heads = c["num_attention_heads"]
size = {"float32": 4, "bfloat16": 2, "float16": 2, "half": 2}[sys.argv[3]]
print(2 * c["num_hidden_layers"] * c.get("num_key_value_heads", heads) * c.get("head_dim", c["hidden_size"] // heads) * int(sys.argv[2]) * size)' \
        "$MODEL/config.json" "$BLOCK" "$DTYPE") || die "cannot size a KV block of $MODEL/config.json (dtype $DTYPE)"
    ARGS+=(--num-gpu-blocks-override "$BLOCKS" --kv-cache-memory-bytes "$((BLOCKS * BLOCK_BYTES))")
else
    ARGS+=(--kv-cache-memory-bytes 268435456)  # 256 MiB, kairos serve's default on CPU
fi
# vLLM binds its worker's OpenMP threads (one per listed CPU) to VLLM_CPU_OMP_THREADS_BIND; every other
# thread and process (API server, EngineCore) keeps the launcher's affinity, set by taskset, until the
# EngineCore is moved to ENGINE_CORE_CPUS once the server is up.
if [ "$(nproc)" -ge 2 ] && command -v taskset > /dev/null; then
    PIN=(taskset -c "$FRONT_CPUS"); ENVS+=("VLLM_CPU_OMP_THREADS_BIND=$ENGINE_CPUS")
else
    PIN=(); ENVS+=("VLLM_CPU_OMP_THREADS_BIND=0")
fi

# setsid: the server leads a process group of its own, which `stop` signals as a whole.
START=$(date +%s.%N)
env "${ENVS[@]}" setsid "${PIN[@]}" "$VENV/bin/python" -m vllm.entrypoints.openai.api_server \
    "${ARGS[@]}" "${EXTRA[@]}" > "$LOG" 2>&1 < /dev/null &
PID=$!
echo "$PID" > "$PIDF"
echo "starting vLLM (pid $PID, log $LOG): ${ENVS[*]} ${PIN[*]} python -m vllm.entrypoints.openai.api_server ${ARGS[*]} ${EXTRA[*]}"
DEADLINE=$(( $(date +%s) + TIMEOUT ))
until curl -sf "$URL/health" > /dev/null 2>&1; do
    if ! kill -0 "$PID" 2> /dev/null; then
        tail -n 20 "$LOG" >&2; rm -f "$PIDF"; die "vLLM exited during startup; see $LOG"
    fi
    if [ "$(date +%s)" -ge "$DEADLINE" ]; then
        "$0" stop --pid-file "$PIDF" > /dev/null || true
        die "no /health after $TIMEOUT s; stopped it; see $LOG"
    fi
    sleep 1
done
if [ ${#PIN[@]} -gt 0 ] && [ "$ENGINE_CORE_CPUS" != "$FRONT_CPUS" ]; then
    CORES=$(ps -o pid=,comm= -g "$PID" | awk '$2 ~ /^VLLM::EngineCor/ {print $1}')
    [ -n "$CORES" ] || die "no VLLM::EngineCore process in group $PID to pin (ps -g $PID)"
    for CORE in $CORES; do taskset -a -cp "$ENGINE_CORE_CPUS" "$CORE" > /dev/null; done
    echo "pinned VLLM::EngineCore ($CORES) to CPU $ENGINE_CORE_CPUS"
fi
echo "vLLM ready at $URL after $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $START }") s (model ${NAME:-$(basename "$MODEL")})"
grep -E "KV cache size|num_gpu_blocks|Maximum concurrency" "$LOG" | sed 's/^/  /' || true
