#!/usr/bin/env bash
# Installs learn2learn 0.2.0 and higher 0.2.1 into distmeta's virtual environment, as optional
# baselines of benchmarks/engine_speed.py. Never a dependency of distmeta itself.
#
#   bash benchmarks/install_baselines.sh            # PYTHON=.venv/bin/python by default
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
PYTHON=${PYTHON:-.venv/bin/python}
PIP=("$PYTHON" -m pip install --disable-pip-version-check -c constraints.txt)

"${PIP[@]}" higher==0.2.1
"${PIP[@]}" 'cython>=3' setuptools wheel scipy requests tqdm gym

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m pip download --disable-pip-version-check --no-deps --no-binary :all: --no-build-isolation \
    learn2learn==0.2.0 -d "$work"
tar xzf "$work"/learn2learn-0.2.0.tar.gz -C "$work"
source_dir="$work/learn2learn-0.2.0"
for module in meta_dataset task_dataset transforms; do
    "$PYTHON" -m cython -3 "$source_dir/learn2learn/data/$module.pyx" -o "$source_dir/learn2learn/data/$module.c"
done
"${PIP[@]}" --no-deps --no-build-isolation "$source_dir"
"$PYTHON" - <<'PY'
import sys, types
sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))
import higher  # noqa: F401
print("higher", higher.__version__ if hasattr(higher, "__version__") else "installed")
PY
echo "installed: higher 0.2.1, learn2learn 0.2.0 (import it via benchmarks/engine_speed.py's stand-in for torchvision)"
