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
require_args 3 $# "$USAGE" \
    "(NPROC: processes on this machine, one per GPU; e.g. 8)"
torchrun_tool "$USAGE" "$3" test "$1" "$2" --launcher pytorch "${@:4}"
