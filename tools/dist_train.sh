#!/usr/bin/env bash
# Distributed training with torchrun (torch.distributed.run):
#   bash tools/dist_train.sh CONFIG NPROC [train.py options]
# NPROC processes on this machine, one per GPU (on a machine without GPUs: CPU processes
# with the gloo backend). Several machines: run it on each one with the same NNODES,
# MASTER_ADDR (address of node 0, reachable from all) and PORT, and NODE_RANK 0..NNODES-1.
# PYTHON picks the interpreter (default: python).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NPROC [train.py options]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
TOOLS=$(dirname "$0")

PYTHONPATH="$TOOLS/..":${PYTHONPATH:-} \
"${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" \
    --master_port="$PORT" \
    "$TOOLS/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
