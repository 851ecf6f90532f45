#!/usr/bin/env bash
# Install (idempotent: seconds once done) and run mmevo's test suite on the CPU.
#
#   bash tools/run_tests.sh [pytest options]     # e.g. -k registry, -x
#
# Exits non-zero when a test fails, and also when no test was collected (pytest's code 5).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/install.sh

rc=0
.venv/bin/python -m pytest tests -q -p no:cacheprovider --timeout=600 "$@" || rc=$?
if [[ $rc -eq 5 ]]; then
  echo "[mmevo tests] ERROR: pytest collected no tests (exit code 5)" >&2
fi
exit $rc
