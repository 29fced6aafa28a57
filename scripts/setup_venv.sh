#!/usr/bin/env bash
# Create (or reuse) .venv at the repository root with mast3r_ros installed (console script `mast3r-ros`).
# Idempotent: a second run only re-installs the package in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
    "$VPY" -m pip install -q --upgrade pip
    # A pinned version resolves to the local CPU wheel here; unpinned would pull CUDA builds.
    "$VPY" -m pip install -q torch==2.13.0
fi
"$VPY" -m pip install -q -e ".[test]"
echo "setup_venv: .venv ready ($("$VPY" -c 'import torch, mast3r_ros; print("torch", torch.__version__, "mast3r_ros", mast3r_ros.__version__)'))"
