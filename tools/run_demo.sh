#!/usr/bin/env bash
# Install (idempotent) and run mmevo's end-to-end demo on the embedded synthetic data:
# generate it, train and evaluate EATFormer-Mobile models, print the metrics and where the
# visualised predictions were written.
#
#   bash tools/run_demo.sh [tools/demo.py options]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/install.sh
exec .venv/bin/python tools/demo.py "$@"
