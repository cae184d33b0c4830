#!/usr/bin/env bash
# Creates a venv with aiconfigurator 0.12.0 (the peer estimator) for estimate.py.
# Usage: benchmarks/aiconfigurator_peer/setup.sh [VENV]   (default: this folder's .venv)
# Idempotent: an existing venv that already has the right version is left as it is.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${1:-$HERE/.venv}"
VERSION=0.12.0
PYTHON="${PYTHON:-python3}"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$VERSION" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
sys.exit(0 if version("aiconfigurator") == sys.argv[1] == version("aiconfigurator-core") else 1)
PY
  echo "aiconfigurator $VERSION already in $VENV"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# aiconfigurator 0.12.0 does not depend on torch (checked: its wheel's Requires-Dist),
# so no torch pin is needed here.
"$VENV/bin/python" -m pip install --quiet "aiconfigurator==$VERSION" "aiconfigurator-core==$VERSION"
"$VENV/bin/python" -c "from importlib.metadata import version; print('aiconfigurator', version('aiconfigurator'), 'in', '$VENV')"
