#!/usr/bin/env bash
# Compatibility matrix: does seplugin install into, and work in, each tested environment?
#
#   bash tools/compat.sh                 # every row
#   bash tools/compat.sh oldest torch2.6 # some rows
#
# For each row: a fresh virtual environment (removed and created again), that row's torch,
# torchvision and numpy, mmcv 2.1.0 with compiled ops through tools/setup_env.sh (wheel
# cache, else a source build with the C++ standard the row's torch needs), the row's
# mmengine/mmdet/mmpretrain; then `pip install -e .` of seplugin, as a user with that
# environment would run it, and a check that it changed none of the row's packages; the
# test extras with the row's versions held; then `python -m seplugin.doctor` and the row's
# tests. Prints a table and writes it into
# docs/compat.md, which the README quotes.
#
# Environment:
#   SEPLUGIN_COMPAT_DIR    venvs, logs and downloaded torch wheels
#                                                     (default: ~/.cache/seplugin/compat)
#   SEPLUGIN_COMPAT_REUSE  1: keep a row's venv if there is one and only bring it to the
#                          row's versions (quick reruns); default 0: a fresh venv
#   SEPLUGIN_COMPAT_LOCK   a lock file: the mmcv build and the tests run under
#                          `flock` on it, one heavy job at a time on a shared machine
#   SEPLUGIN_COMPAT_TESTS  pytest arguments instead of the fast subset below, e.g. "tests"
#                          for the whole default suite
#   SEPLUGIN_WHEELS        prebuilt mmcv wheels to seed the cache with, one folder per torch
#                          (torch2.1.2-cpu/, torch2.6.0-cpu/; the top level is torch 2.14.1),
#                          each with a SHA256SUMS          (default: ../shared/wheels)
#   SEPLUGIN_WHEEL_CACHE   the wheel cache tools/setup_env.sh uses
set -uo pipefail
export LC_ALL=C  # one sort order for sort and comm

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${SEPLUGIN_COMPAT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/seplugin/compat}
CACHE=${SEPLUGIN_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/seplugin/wheels}
WHEELS=${SEPLUGIN_WHEELS:-$ROOT/../shared/wheels}
REUSE=${SEPLUGIN_COMPAT_REUSE:-0}
RESULTS=$ROOT/docs/compat.md

# The rows. Change a range in pyproject.toml only together with the row that tests its end.
#  name     python torch  torchvision numpy  mmengine mmcv  mmdet mmpretrain
ROWS='
oldest   3.11  2.1.2  0.16.2  1.26.4  0.10.7  2.1.0  3.3.0  1.2.0
torch2.6 3.11  2.6.0  0.21.0  2.0.2   0.10.7  2.1.0  3.3.0  1.2.0
default  3.11  2.14.1 0.29.1  2.4.6   0.10.7  2.1.0  3.3.0  1.2.0
'
# What seplugin must not change in an environment that satisfies its ranges.
WATCHED='torch torchvision numpy mmcv mmengine mmdet mmpretrain'

# The fast subset (a few minutes on 2 cores): the SE layers and backbones against their
# upstream references, checkpoints (safe loading, converters), the registry and every
# config in configs/, the hooks, and one tiny classification training with its test.
FAST_TESTS='tests/test_models tests/test_checkpoint.py tests/test_converters.py
tests/test_registry.py tests/test_doctor.py tests/test_configs tests/test_engine
tests/test_tools/test_train_test_classification.py'
TESTS=${SEPLUGIN_COMPAT_TESTS:-$FAST_TESTS}

say() { printf '[compat] %s\n' "$*"; }
heavy() {
    if [ -n "${SEPLUGIN_COMPAT_LOCK:-}" ]; then flock "$SEPLUGIN_COMPAT_LOCK" "$@"; else "$@"; fi
}

# Copies the prebuilt wheel for torch $1 (CPU ops) into the cache setup_env.sh reads,
# when there is one and its checksum holds.
seed_wheel() {
    local src=$WHEELS/torch$1-cpu
    [ "$1" = 2.14.1 ] && [ ! -d "$src" ] && src=$WHEELS
    [ -f "$src/SHA256SUMS" ] || return 0
    if (cd "$src" && sha256sum --quiet -c SHA256SUMS); then
        mkdir -p "$CACHE/torch$1-cpu"
        cp -n "$src"/mmcv-*.whl "$CACHE/torch$1-cpu/"
    else
        say "checksums do not hold in $src: not using its wheels"
    fi
}

# pip freeze of the row's environment, lower-case names, one name==version a line.
freeze() { "$1" -m pip list --format=freeze 2>/dev/null | tr 'A-Z_' 'a-z-' | sort; }

# Whether the python $1 has each of the name==version pins $2... installed.
has() {
    local py=$1 pin
    shift
    for pin in "$@"; do freeze "$py" | grep -q -x -F "$pin" || return 1; done
}

# Installs row $1 into the venv $2; packages fixed by the constraints file $3. The
# downloads run outside the lock; only a build of mmcv (no cached wheel) runs under it.
install_row() {
    local name=$1 venv=$2 constraints=$3 py torch tv np mme mmc mmd mmp
    : "${venv:?}"
    read -r py torch tv np mme mmc mmd mmp <<<"$4"
    if [ "$REUSE" = 1 ] && [ -x "$venv/bin/python" ]; then
        say "$name: reusing $venv, bringing it to the row's versions"
        touch "$venv.reused"
        "$venv/bin/python" -m pip uninstall -q -y seplugin >/dev/null 2>&1
    else
        rm -rf "$venv" "$venv.reused"
        "python$py" -m venv "$venv" || return 1
    fi
    export PIP_CONSTRAINT=$constraints
    if ! has "$venv/bin/python" "torch==$torch" "torchvision==$tv" "numpy==$np"; then
        # torch with its CUDA libraries is several GB: downloaded once into $DIR/downloads,
        # so that a fresh venv of the same row installs from disk.
        "$venv/bin/python" -m pip download -q -d "$DIR/downloads" "setuptools<81" wheel \
            packaging "numpy==$np" "torch==$torch" "torchvision==$tv" || return 1
        "$venv/bin/python" -m pip install -q --no-index --find-links "$DIR/downloads" \
            "setuptools<81" wheel packaging "numpy==$np" "torch==$torch" "torchvision==$tv" \
            || return 1
    fi
    seed_wheel "$torch"
    local setup=(env SEPLUGIN_VENV="$venv" SEPLUGIN_TORCH_VERSION="$torch"
                 SEPLUGIN_TORCHVISION_VERSION="$tv" SEPLUGIN_WHEEL_CACHE="$CACHE"
                 SEPLUGIN_SETUP_SELF=0 bash "$ROOT/tools/setup_env.sh")
    if compgen -G "$CACHE/torch$torch-*/mmcv-$mmc-*.whl" >/dev/null; then
        "${setup[@]}" || return 1
    else
        heavy "${setup[@]}" || return 1  # builds mmcv
    fi
    "$venv/bin/python" -m pip install -q "mmengine==$mme" "mmdet==$mmd" "mmpretrain==$mmp" \
        || return 1
    unset PIP_CONSTRAINT
}

# Runs row $1; prints "status<TAB>detail" as its last line.
run_row() {
    local name=$1 spec=$2 venv=$DIR/venvs/$1 py torch tv np mme mmc mmd mmp
    read -r py torch tv np mme mmc mmd mmp <<<"$spec"
    local constraints=$DIR/venvs/$name.constraints.txt
    mkdir -p "$DIR/venvs"
    printf '%s\n' "torch==$torch" "torchvision==$tv" "numpy==$np" "mmengine==$mme" \
        "mmcv==$mmc" "mmdet==$mmd" "mmpretrain==$mmp" >"$constraints"
    say "$name: python $py, torch $torch, torchvision $tv, numpy $np, mmcv $mmc," \
        "mmengine $mme, mmdet $mmd, mmpretrain $mmp in $venv"
    install_row "$name" "$venv" "$constraints" "$spec" \
        || { printf 'FAIL\tinstalling the row packages\n'; return; }
    "$venv/bin/python" -m pip check || { printf 'FAIL\tpip check before seplugin\n'; return; }

    # seplugin as its README says, without constraints: it must keep the row's versions.
    local before=$DIR/venvs/$name.before.txt after=$DIR/venvs/$name.after.txt
    freeze "$venv/bin/python" >"$before"
    say "$name: pip install -e ."
    (cd "$ROOT" && "$venv/bin/python" -m pip install -q -e .) \
        || { printf 'FAIL\tpip install -e .\n'; return; }
    freeze "$venv/bin/python" >"$after"
    local changed='' pkg
    for pkg in $WATCHED; do
        if ! grep -q -x -F "$(grep "^$pkg==" "$before")" "$after"; then
            changed="$changed $pkg"
        fi
    done
    local was added
    was=$(comm -23 "$before" "$after" | tr '\n' ' ')
    added=$(comm -13 <(sed 's/==.*//' "$before" | sort) <(sed 's/==.*//' "$after" | sort) \
        | tr '\n' ' ')
    say "$name: installing seplugin changed: ${was:-nothing}; added: ${added:-nothing}"
    if [ -n "$changed" ]; then
        printf 'FAIL\tpip install -e . changed%s\n' "$changed"
        return
    fi
    # The test tools (pytest, timm, onnx, onnxruntime, ...) are not seplugin's to impose:
    # they are installed with the row's versions held, in versions that fit them.
    say "$name: pip install -e \".[tests]\" with the row's versions held"
    (cd "$ROOT" && "$venv/bin/python" -m pip install -q -c "$constraints" -e ".[tests]") \
        || { printf 'FAIL\tthe test extras do not fit the row\n'; return; }
    "$venv/bin/python" -m pip check || { printf 'FAIL\tpip check after seplugin\n'; return; }

    say "$name: python -m seplugin.doctor"
    local doctor=''
    (cd "$ROOT" && "$venv/bin/python" -m seplugin.doctor) || doctor='doctor failed; '

    say "$name: pytest $(echo $TESTS)"
    local log=$DIR/$name.pytest.log
    # shellcheck disable=SC2086  # TESTS is a list of pytest arguments
    (cd "$ROOT" && heavy "$venv/bin/python" -m pytest -q -p no:cacheprovider $TESTS) \
        2>&1 | tee "$log"
    local status=${PIPESTATUS[0]} summary
    summary=$(grep -E '[0-9]+ (passed|failed|errors?)\b' "$log" | tail -1 | sed -E 's/^=+ | =+$//g')
    # no summary line: pytest stopped before the tests, e.g. on an import error
    [ -n "$summary" ] || summary=$(grep -E '^E +' "$log" | tail -1 | sed -E 's/^E +//')
    if [ "$status" = 0 ] && [ -z "$doctor" ]; then
        printf 'PASS\t%s\n' "$summary"
    else
        printf 'FAIL\t%s%s\n' "$doctor" "${summary:-pytest exited $status}"
    fi
}

# Updates the row's line of docs/compat.md (a markdown table), keeping the other rows.
record() {
    local name=$1 spec=$2 status=$3 detail=$4 machine=$5 py torch tv np mme mmc mmd mmp
    read -r py torch tv np mme mmc mmd mmp <<<"$spec"
    local line="| \`$name\` | $py | $torch | $tv | $np | $mmc | $mme | $mmd | $mmp | $status: $detail | $(date -u '+%Y-%m-%d %H:%M UTC') | $machine |"
    exec 8<"${BASH_SOURCE[0]}" && flock 8  # two matrix runs at once each keep their rows
    [ -f "$RESULTS" ] || cat >"$RESULTS" <<'EOF'
# Compatibility matrix: last results

Written by `bash tools/compat.sh`. Each row is a virtual environment with these versions
(made fresh unless the result says "reused venv"); a row fails if `pip install -e .` of
seplugin changed any of them, if its test extras cannot be installed with them held, if
`python -m seplugin.doctor` fails or if the fast test subset named in the script fails.

| row | python | torch | torchvision | numpy | mmcv | mmengine | mmdet | mmpretrain | result | date | machine |
|---|---|---|---|---|---|---|---|---|---|---|---|
EOF
    local tmp n rest
    tmp=$(mktemp)
    {   # the header, then one line per row in the order of $ROWS
        sed -n '1,/^|---/p' "$RESULTS"
        while read -r n rest; do
            [ -n "$n" ] || continue
            if [ "$n" = "$name" ]; then
                printf '%s\n' "$line"
            else
                grep -F "| \`$n\` |" "$RESULTS"
            fi
        done <<<"$ROWS"
    } >"$tmp"
    mv "$tmp" "$RESULTS"
    flock -u 8
}

# Everything below is one function, read whole before it runs: editing this file while a
# matrix runs does not change the running one.
main() {
    wanted=("$@")
    declare -a names=() specs=() statuses=() details=()
    while read -r name spec; do
        [ -n "$name" ] || continue
        if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " == *" $name "* ]]; then continue; fi
        names+=("$name"); specs+=("$spec")
    done <<<"$ROWS"
    if [ ${#names[@]} -eq 0 ]; then
        say "no such row: ${wanted[*]} (rows: $(awk 'NF {printf "%s ", $1}' <<<"$ROWS"))"
        exit 2
    fi

    mkdir -p "$DIR"
    for i in "${!names[@]}"; do
        name=${names[$i]}
        log=$DIR/$name.log
        say "row $name (log: $log)"
        run_row "$name" "${specs[$i]}" 2>&1 | tee "$log"
        result=$(tail -1 "$log")
        statuses[$i]=${result%%$'\t'*}
        details[$i]=${result#*$'\t'}
        [ -f "$DIR/venvs/$name.reused" ] && details[$i]="${details[$i]} (reused venv)"
        gpu=$("$DIR/venvs/$name/bin/python" -c "import torch; print(torch.cuda.get_device_name() \
    if torch.cuda.is_available() else 'no GPU')" 2>/dev/null || echo 'GPU unknown')
        record "$name" "${specs[$i]}" "${statuses[$i]}" "${details[$i]}" \
            "$(nproc)-core $(uname -m) CPU, $gpu"
    done

    printf '\n%-9s %-6s %-7s %-8s %-7s %-6s %-8s %-6s %-10s %s\n' row python torch vision numpy \
        mmcv mmengine mmdet mmpretrain result
    failed=0
    for i in "${!names[@]}"; do
        read -r py torch tv np mme mmc mmd mmp <<<"${specs[$i]}"
        printf '%-9s %-6s %-7s %-8s %-7s %-6s %-8s %-6s %-10s %s: %s\n' "${names[$i]}" "$py" \
            "$torch" "$tv" "$np" "$mmc" "$mme" "$mmd" "$mmp" "${statuses[$i]}" "${details[$i]}"
        [ "${statuses[$i]}" = PASS ] || failed=1
    done
    say "results written to docs/compat.md"
    return $failed
}

main "$@"; exit $?
