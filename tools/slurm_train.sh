#!/usr/bin/env bash
# Training on a slurm cluster, one task per GPU, any number of nodes:
#   [GPUS=16] [GPUS_PER_NODE=8] bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]
# srun starts GPUS tasks, GPUS_PER_NODE per node; mmengine's slurm launcher reads the rank,
# world size and master address from slurm's environment (MASTER_PORT: default 29500).
# CPUS_PER_TASK (default 5), SRUN_ARGS (more srun options), PYTHON (default: the active
# environment's python, else the repository's .venv; see tools/launcher_env.sh).
# CPU-only nodes: GPUS_PER_NODE=0 and GPUS = the number of tasks (TASKS_PER_NODE per node);
# the backend is then gloo.
set -euo pipefail
TOOLS=$(dirname "$0")
# shellcheck source=tools/launcher_env.sh
source "$TOOLS/launcher_env.sh"
USAGE="[GPUS=16] [GPUS_PER_NODE=8] $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]"
require_args 4 $# "$USAGE"
srun_tool "$USAGE" "$1" "$2" train "$3" --work-dir="$4" --launcher=slurm "${@:5}"
