#!/usr/bin/env bash
# Distributed evaluation with torchrun (torch.distributed.run):
#   bash tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py options]
# Each process evaluates its share of the data; the results are gathered on rank 0, which
# computes the metric. Several machines, GPUs or CPUs, PYTHON: as in tools/dist_train.sh.
set -euo pipefail
TOOLS=$(dirname "$0")
# shellcheck source=tools/launcher_env.sh
source "$TOOLS/launcher_env.sh"
USAGE="$0 CONFIG CHECKPOINT NPROC [test.py options]"
if [ $# -lt 3 ]; then
    echo "usage: $USAGE" >&2
    echo "(NPROC: processes on this machine, one per GPU; e.g. 8)" >&2
    exit 2
fi
require_count NPROC "$3" "$USAGE"
require_count NNODES "${NNODES:-1}" "$USAGE"
require_count NODE_RANK "${NODE_RANK:-0}" "$USAGE" 0
pick_python
require_torch
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
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
    "$TOOLS/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
