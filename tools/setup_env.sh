#!/usr/bin/env bash
# Creates (or checks) the seplugin environment in one go:
#   a virtual environment, torch 2.14.1 + torchvision 0.29.1, mmcv 2.1.0 with compiled ops,
#   mmengine / mmdet / mmpretrain, and seplugin itself (editable, with its test extras).
#
# mmcv 2.1.0 has no wheel on PyPI. It is taken from a wheel cache when a wheel built for the
# same torch and device kind is there; otherwise it is built from the PyPI sdist, with the
# sdist's hard-coded -std=c++14/c++17 raised to c++20 when torch >= 2.10 (its headers need
# it; older torch builds with the sdist as published), and the wheel it built is put into
# the cache for next time. The build uses CUDA when torch
# sees a GPU (or FORCE_CUDA=1), so GPU users get CUDA ops.
#
# Running it again is cheap: every step first checks whether it is already done.
#
# Environment:
#   SEPLUGIN_VENV         where the environment lives           (default: <repo>/.venv)
#   SEPLUGIN_WHEEL_CACHE  wheel cache, one folder per torch/device (default: ~/.cache/seplugin/wheels)
#   PYTHON                interpreter that creates the venv      (default: python3)
#   SEPLUGIN_TORCH_VERSION, SEPLUGIN_TORCHVISION_VERSION
#                         another tested torch pair (tools/compat.sh sets them per row)
#   SEPLUGIN_SETUP_SELF   0: stop after mmcv, do not install seplugin (tools/compat.sh)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SEPLUGIN_VENV:-$ROOT/.venv}
CACHE=${SEPLUGIN_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/seplugin/wheels}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${SEPLUGIN_TORCH_VERSION:-2.14.1}
TORCHVISION_VERSION=${SEPLUGIN_TORCHVISION_VERSION:-0.29.1}
MMCV_VERSION=2.1.0
SETUPTOOLS_RANGE='setuptools>=77.0.3,<81'

say() { printf '[setup_env] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

# pkg_resources is gone from setuptools >= 81; mmcv's setup.py and mmengine need it.
if ! "$PY" -c "import pkg_resources, setuptools, wheel" 2>/dev/null \
    || ! "$PY" -c "import setuptools, sys; from packaging.version import Version as V; \
sys.exit(not V('77.0.3') <= V(setuptools.__version__) < V('81'))" 2>/dev/null; then
    say "installing $SETUPTOOLS_RANGE and wheel"
    pip_install "$SETUPTOOLS_RANGE" wheel packaging
fi

if ! "$PY" -c "import torch, torchvision, sys; \
sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION' \
or torchvision.__version__.split('+')[0] != '$TORCHVISION_VERSION')" 2>/dev/null; then
    say "installing torch $TORCH_VERSION and torchvision $TORCHVISION_VERSION"
    pip_install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi

mmcv_ok() {
    "$PY" -c "import mmcv, sys; from mmcv.ops import nms; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" \
        2>/dev/null
}

if ! mmcv_ok; then
    # One cache folder per torch version and device kind: a CPU-ops wheel must never be
    # picked up on a CUDA machine, nor a wheel built against another torch.
    KEY=$("$PY" -c "import os, torch; cuda = torch.cuda.is_available() or os.environ.get('FORCE_CUDA') == '1'; \
print('torch' + torch.__version__.split('+')[0] + '-' + ('cu' + str(torch.version.cuda).replace('.', '') if cuda else 'cpu'))")
    WHEELS="$CACHE/$KEY"
    mkdir -p "$WHEELS"
    if ! ls "$WHEELS"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1; then
        say "no cached mmcv $MMCV_VERSION wheel in $WHEELS: building it from the sdist (about 20 minutes on 2 cores)"
        BUILD=$(mktemp -d)
        trap 'rm -rf "$BUILD"' EXIT
        pip_install ninja psutil
        "$PY" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
            --no-build-isolation "mmcv==$MMCV_VERSION" -d "$BUILD"
        tar -xzf "$BUILD/mmcv-$MMCV_VERSION.tar.gz" -C "$BUILD"
        SRC="$BUILD/mmcv-$MMCV_VERSION"
        # torch >= 2.10 headers need C++20; older torch builds with the sdist as published.
        if "$PY" -c "import sys, torch; from packaging.version import Version as V; \
sys.exit(V(torch.__version__.split('+')[0]) < V('2.10'))"; then
            sed -E -i 's/(std[=:]c\+\+)1[47]/\120/g' "$SRC/setup.py"
            grep -q 'c++20' "$SRC/setup.py" || { say "could not raise the C++ standard in $SRC/setup.py"; exit 1; }
        fi
        MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" -m pip wheel --disable-pip-version-check \
            --no-build-isolation --no-deps -w "$WHEELS" "$SRC"
    fi
    say "installing mmcv $MMCV_VERSION from $WHEELS"
    pip_install --find-links "$WHEELS" --only-binary mmcv "mmcv==$MMCV_VERSION"
    mmcv_ok || { say "mmcv $MMCV_VERSION is installed but its compiled ops do not load"; exit 1; }
fi

if [ "${SEPLUGIN_SETUP_SELF:-1}" = 0 ]; then
    exit 0
fi

say "installing seplugin (editable) with its test extras"
pip_install -e "$ROOT[tests]"

"$PY" -m seplugin.doctor
