#!/usr/bin/env bash
# Evaluation on a slurm cluster, one task per GPU, any number of nodes:
#   [GPUS=16] [GPUS_PER_NODE=8] bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]
# Variables as in tools/slurm_train.sh.
set -euo pipefail
TOOLS=$(dirname "$0")
# shellcheck source=tools/launcher_env.sh
source "$TOOLS/launcher_env.sh"
USAGE="[GPUS=16] [GPUS_PER_NODE=8] $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]"
require_args 4 $# "$USAGE"
srun_tool "$USAGE" "$1" "$2" test "$3" "$4" --launcher=slurm "${@:5}"
