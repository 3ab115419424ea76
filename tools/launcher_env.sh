# Shared by tools/dist_{train,test}.sh and tools/slurm_{train,test}.sh (sourced, not run):
# the interpreter, the checks of the counts, and the torchrun and srun commands.

# The interpreter: $PYTHON when set; else the active environment's python (a virtualenv or
# conda environment that is activated); else the repository's .venv, which
# tools/setup_env.sh creates (so the launchers work without activating it); else python.
pick_python() {
    if [ -n "${PYTHON:-}" ]; then
        return
    fi
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    if [ -n "${VIRTUAL_ENV:-}" ] || [ -n "${CONDA_PREFIX:-}" ]; then
        PYTHON=python
    elif [ -x "${SEPLUGIN_VENV:-$root/.venv}/bin/python" ]; then
        PYTHON=${SEPLUGIN_VENV:-$root/.venv}/bin/python
    else
        PYTHON=python
    fi
}

# Fail with a message unless the interpreter has torch (the launchers need torchrun).
require_torch() {
    if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
        echo "$0: '$PYTHON' ($(command -v "$PYTHON" || echo 'not found')) cannot import" \
             "torch; activate the environment (source .venv/bin/activate) or set PYTHON" \
             "to its interpreter" >&2
        exit 2
    fi
}

# require_args MIN GIVEN USAGE [HINT]: GIVEN (the script's $#) must be at least MIN, else
# the usage line (and HINT) and exit 2.
require_args() {
    if [ "$2" -lt "$1" ]; then
        echo "usage: $3" >&2
        if [ -n "${4:-}" ]; then
            echo "$4" >&2
        fi
        exit 2
    fi
}

# require_count NAME VALUE USAGE: VALUE must be a whole number >= 1 (>= 0 with "zero ok").
require_count() {
    local name=$1 value=$2 usage=$3 min=${4:-1}
    if ! [[ "$value" =~ ^[0-9]+$ ]] || [ "$value" -lt "$min" ]; then
        echo "$0: $name must be a whole number >= $min, got '$value'" >&2
        echo "usage: $usage" >&2
        exit 2
    fi
}

# torchrun_tool USAGE NPROC TOOL ARGS...: tools/TOOL.py ARGS... in NPROC processes on this
# machine under torchrun (torch.distributed.run), once the counts are checked; NNODES,
# NODE_RANK, MASTER_ADDR and PORT as tools/dist_train.sh says.
torchrun_tool() {
    local usage=$1 nproc=$2 tool=$3 tools
    shift 3
    require_count NPROC "$nproc" "$usage"
    require_count NNODES "${NNODES:-1}" "$usage"
    require_count NODE_RANK "${NODE_RANK:-0}" "$usage" 0
    pick_python
    require_torch
    tools=$(dirname "${BASH_SOURCE[0]}")
    PYTHONPATH="$tools/..":${PYTHONPATH:-} \
    "$PYTHON" -m torch.distributed.run \
        --nnodes="${NNODES:-1}" \
        --node_rank="${NODE_RANK:-0}" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" \
        --nproc_per_node="$nproc" \
        --master_port="${PORT:-29500}" \
        "$tools/$tool.py" "$@"
}

# srun_tool USAGE PARTITION JOB_NAME TOOL ARGS...: tools/TOOL.py ARGS... as slurm tasks, once
# the counts are checked; GPUS, GPUS_PER_NODE, TASKS_PER_NODE, CPUS_PER_TASK and SRUN_ARGS
# as tools/slurm_train.sh says.
srun_tool() {
    local usage=$1 partition=$2 job_name=$3 tool=$4 tools
    shift 4
    local gpus=${GPUS:-8} gpus_per_node=${GPUS_PER_NODE:-8}
    local tasks_per_node=${TASKS_PER_NODE:-$gpus_per_node} cpus_per_task=${CPUS_PER_TASK:-5}
    require_count GPUS "$gpus" "$usage"
    require_count GPUS_PER_NODE "$gpus_per_node" "$usage" 0
    require_count TASKS_PER_NODE "$tasks_per_node" "$usage"
    require_count CPUS_PER_TASK "$cpus_per_task" "$usage"
    pick_python
    local gres=()
    if [ "$gpus_per_node" -gt 0 ]; then
        gres=(--gres=gpu:"$gpus_per_node")
    fi
    tools=$(dirname "${BASH_SOURCE[0]}")
    # shellcheck disable=SC2086  # SRUN_ARGS is a list of options
    PYTHONPATH="$tools/..":${PYTHONPATH:-} \
    srun -p "$partition" \
        --job-name="$job_name" \
        "${gres[@]}" \
        --ntasks="$gpus" \
        --ntasks-per-node="$tasks_per_node" \
        --cpus-per-task="$cpus_per_task" \
        --kill-on-bad-exit=1 \
        ${SRUN_ARGS:-} \
        "$PYTHON" -u "$tools/$tool.py" "$@"
}
