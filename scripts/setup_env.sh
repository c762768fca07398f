#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install SegTransfer into it.
# Usage: scripts/setup_env.sh [EXTRAS]   e.g. scripts/setup_env.sh test,slicer
# torch is installed first and pinned (torch==2.13.0, CPU build) so that pip never resolves
# another torch build (a CUDA build would pull several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install --quiet --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null \
  || python -m pip install --quiet torch==2.13.0 2>&1 | grep -v '^WARNING: Location' || true
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
python -m pip install --quiet -e "$spec" torch==2.13.0 2>&1 | grep -v '^WARNING: Location' || true
python -c "import torch, segtransfer; assert torch.__version__.startswith('2.13.0'), torch.__version__" \
  || { echo "setup failed: segtransfer or torch==2.13.0 is not importable in .venv" >&2; exit 1; }
