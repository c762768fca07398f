#!/usr/bin/env bash
# The test suite on a fresh machine: install into .venv with the test and Slicer-library extras, run pytest.
# Usage: scripts/test.sh [pytest options]   (slow tests: scripts/test.sh -m slow)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test,slicer
exec .venv/bin/python -m pytest Testing "$@"
