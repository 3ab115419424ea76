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
if [ $# -lt 4 ]; then
    echo "usage: $USAGE" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
TASKS_PER_NODE=${TASKS_PER_NODE:-$GPUS_PER_NODE}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
require_count GPUS "$GPUS" "$USAGE"
require_count GPUS_PER_NODE "$GPUS_PER_NODE" "$USAGE" 0
require_count TASKS_PER_NODE "$TASKS_PER_NODE" "$USAGE"
require_count CPUS_PER_TASK "$CPUS_PER_TASK" "$USAGE"
pick_python
GRES=()
if [ "$GPUS_PER_NODE" -gt 0 ]; then
    GRES=(--gres=gpu:"$GPUS_PER_NODE")
fi

# shellcheck disable=SC2086  # SRUN_ARGS is a list of options
PYTHONPATH="$TOOLS/..":${PYTHONPATH:-} \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    "${GRES[@]}" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$TASKS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$TOOLS/train.py" "$CONFIG" --work-dir="$WORK_DIR" \
    --launcher=slurm "${@:5}"
