#!/usr/bin/env bash
# One-time set-up of a development checkout: Qt's system libraries, then a virtual
# environment in .venv with cardfit installed in editable mode and the test tools.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

bash packaging/system-deps.sh "$@"

py=${PYTHON:-python3}
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "cardfit needs Python 3.11 or newer; $($py --version 2>&1) found (set PYTHON=...)" >&2; exit 1; }

[[ -x .venv/bin/python ]] || "$py" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
# torch first, pinned to a CPU build: an unpinned install pulls several GB of CUDA
# wheels. Users with a CUDA torch already installed keep theirs (cardfit requires any
# recent torch). CARDFIT_TORCH overrides the pin, e.g. CARDFIT_TORCH=torch for CUDA.
.venv/bin/python -c 'import torch' 2>/dev/null || "${pip[@]}" install "${CARDFIT_TORCH:-torch==2.13.0}"
stamp=.venv/.cardfit-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  "${pip[@]}" install -e '.[test,dist]'
  touch "$stamp"
fi
