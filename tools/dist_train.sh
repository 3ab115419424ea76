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
require_args 2 $# "$USAGE" \
    "(NPROC: processes on this machine, one per GPU; e.g. 8)"
torchrun_tool "$USAGE" "$2" train "$1" --launcher pytorch "${@:3}"
