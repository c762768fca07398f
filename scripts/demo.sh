#!/usr/bin/env bash
# The main job on a fresh machine: install into .venv, then run the end-to-end demo on generated data.
# Usage: scripts/demo.sh [OUTPUT_FOLDER] [extra `segtransfer demo` options]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
out="${1:-demo_output}"
shift || true
exec .venv/bin/segtransfer demo --out "$out" "$@"
