#!/usr/bin/env bash
# Creates benchmarks/.venv-catsim: a virtualenv of its own holding catsim 0.21.0 (PyPI), the peer the
# CAT-simulation benchmark compares against. It is kept apart from the project's .venv so catsim's
# pinned dependencies never constrain ours. Idempotent: does nothing when the venv is already complete.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-catsim"
python="${PYTHON:-python3}"
catsim_version="0.21.0"
stamp="$venv/.catsim-$catsim_version"

if [[ -f "$stamp" ]]; then
    exit 0
fi
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "catsim==$catsim_version"
"$venv/bin/python" -c "import catsim, numpy; print('catsim', '$catsim_version', 'numpy', numpy.__version__)"
touch "$stamp"
