#!/usr/bin/env bash
# Distributed training with torchrun (torch.distributed.run):
#   bash tools/dist_train.sh CONFIG NPROC [train.py options]
# NPROC processes on this machine, one per GPU (on a machine without GPUs: CPU processes
# with the gloo backend). Several machines: run it on each one with the same NNODES,
# MASTER_ADDR (address of node 0, reachable from all) and PORT, and NODE_RANK 0..NNODES-1.
# PYTHON picks the interpreter (default: the active environment's python, else the
# repository's .venv; see tools/launcher_env.sh).
set -euo pipefail
TOOLS=$(dirname "$0")
# shellcheck source=tools/launcher_env.sh
source "$TOOLS/launcher_env.sh"
USAGE="$0 CONFIG NPROC [train.py options]"
if [ $# -lt 2 ]; then
    echo "usage: $USAGE" >&2
    echo "(NPROC: processes on this machine, one per GPU; e.g. 8)" >&2
    exit 2
fi
require_count NPROC "$2" "$USAGE"
require_count NNODES "${NNODES:-1}" "$USAGE"
require_count NODE_RANK "${NODE_RANK:-0}" "$USAGE" 0
pick_python
require_torch
CONFIG=$1
NPROC=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

PYTHONPATH="$TOOLS/..":${PYTHONPATH:-} \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" \
    --master_port="$PORT" \
    "$TOOLS/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
