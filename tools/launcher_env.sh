# Shared by tools/dist_{train,test}.sh and tools/slurm_{train,test}.sh (sourced, not run).

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

# require_count NAME VALUE USAGE: VALUE must be a whole number >= 1 (>= 0 with "zero ok").
require_count() {
    local name=$1 value=$2 usage=$3 min=${4:-1}
    if ! [[ "$value" =~ ^[0-9]+$ ]] || [ "$value" -lt "$min" ]; then
        echo "$0: $name must be a whole number >= $min, got '$value'" >&2
        echo "usage: $usage" >&2
        exit 2
    fi
}
