#!/usr/bin/env bash
# Installs learn2learn 0.2.0 and higher 0.2.1, the optional baselines of benchmarks/engine_speed.py,
# into a virtual environment of their own, .venv-baselines (distmeta with its pinned versions, plus
# the two libraries): they are never a dependency of distmeta, and distmeta's .venv stays as
# constraints.txt makes it.
#
#   bash benchmarks/install_baselines.sh     # then: .venv-baselines/bin/python benchmarks/engine_speed.py
#
# higher installs as it is. learn2learn 0.2.0's sdist ships Cython-generated C that includes
# longintrepr.h, gone from CPython 3.11, so its three .c files are generated again from their
# .pyx sources with Cython 3 and the package is built without build isolation (with the Cython
# and numpy installed here). Its __init__ imports gym (installed here) and torchvision, which has
# no CPU build for torch 2.13: benchmarks/engine_speed.py puts an inert stand-in module in its
# place before importing learn2learn (the MAML wrapper never touches torchvision).
# torch and numpy stay at distmeta's pinned versions (constraints.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-baselines}
if [ ! -x "$VENV/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$VENV"
fi
PYTHON="$VENV/bin/python"
PIP=("$PYTHON" -m pip install --quiet --disable-pip-version-check -c constraints.txt)

"${PIP[@]}" -e .
"${PIP[@]}" higher==0.2.1
"${PIP[@]}" 'cython>=3' setuptools wheel scipy requests tqdm gym

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: --no-build-isolation \
    learn2learn==0.2.0 -d "$work"
tar xzf "$work"/learn2learn-0.2.0.tar.gz -C "$work"
source_dir="$work/learn2learn-0.2.0"
for module in meta_dataset task_dataset transforms; do
    "$PYTHON" -m cython -3 "$source_dir/learn2learn/data/$module.pyx" -o "$source_dir/learn2learn/data/$module.c"
done
"${PIP[@]}" --no-deps --no-build-isolation "$source_dir"
"$PYTHON" - <<'PY'
import sys

sys.path.insert(0, "benchmarks")
import higher  # noqa: F401
from engine_speed import import_learn2learn

print("learn2learn", import_learn2learn().__version__, "and higher import")
PY
echo "installed into $VENV: distmeta, higher 0.2.1, learn2learn 0.2.0"
