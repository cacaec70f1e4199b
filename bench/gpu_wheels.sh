#!/usr/bin/env bash
# Make .whl/: the wheels bench/gpu_check.sh installs on a GPU machine that lacks them (that machine has no
# network). Run it on a machine with access to the package index, x86-64 Linux, CPython >= 3.11 (the polars
# runtime wheel is an abi3 manylinux x86-64 wheel for the CPython it was downloaded with, or newer).
# Versions are pinned to the ones installed here, where the test suite passes; polars and polars-runtime-32
# must be the same version, or polars refuses to import.
#   bash bench/gpu_wheels.sh        # then carry .whl/ (git-ignored) with the repository to the GPU machine
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
ver() { "$PYTHON" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
PV=$(ver polars)
RV=$(ver polars-runtime-32)
if [ -z "$PV" ] || [ "$PV" != "$RV" ]; then
    echo "polars ('$PV') and polars-runtime-32 ('$RV') must be installed here at the same version" >&2
    exit 2
fi
SPECS=("polars==$PV" "polars-runtime-32==$RV")
for p in pytest pluggy iniconfig pygments packaging; do
    v=$(ver "$p")
    SPECS+=("$p${v:+==$v}")
done
rm -rf .whl
mkdir .whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d .whl "${SPECS[@]}"
ls -l .whl
du -sh .whl
