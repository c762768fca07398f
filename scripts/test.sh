#!/usr/bin/env bash
# The test suite on a fresh machine: install into .venv with the test and Slicer-library extras, run pytest.
# Usage: scripts/test.sh [pytest options]   (slow tests: scripts/test.sh -m slow)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test,slicer,multisite
# A real head CT for the hemorrhage tests (Debian's invesalius-examples); skipped where it cannot be installed.
cranium=/usr/share/doc/invesalius-examples/examples/Cranium.inv3
if [ ! -f "$cranium" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq invesalius-examples) >/dev/null 2>&1 \
    || echo "note: invesalius-examples not installed; the real head CT test will be skipped" >&2
fi
# A real headless browser for the review-report test (Debian's chromium); skipped where it cannot be installed.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
    || echo "note: chromium not installed; the browser test of the review report will be skipped" >&2
fi
exec .venv/bin/python -m pytest Testing "$@"
