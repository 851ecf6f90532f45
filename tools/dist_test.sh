#!/usr/bin/env bash
# Multi-process testing with torchrun (one process per GPU, or CPU processes over gloo).
#
#   bash tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py options]
#
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT (default 29500) on every node.
# Python: $PYTHON if set, else the active virtualenv's python, else the checkout's .venv.
set -euo pipefail

if [[ $# -lt 3 ]]; then
  echo "usage: bash $0 CONFIG CHECKPOINT NPROC [test.py options]" >&2
  exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -z "${VIRTUAL_ENV:-}" && -x "$ROOT/.venv/bin/python" ]]; then
    PYTHON="$ROOT/.venv/bin/python"
  else
    PYTHON=python
  fi
fi

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# One process checks the config's data first, so a missing dataset is one line instead of a
# failure in every process and the launcher's traceback.
"$PYTHON" "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --check-data "${@:4}" >/dev/null
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" \
    --master_port="$PORT" \
    "$ROOT/tools/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
