# Sourced by the set-up scripts: create .venv if missing and install the project.
# The torch pin is the build the tests run on; setup.py keeps a loose range for users.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SWARMTRAIN_VENV:-$ROOT/.venv}"
TORCH_PIN="${SWARMTRAIN_TORCH:-torch==2.13.0}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
STAMP="$VENV/.swarmtrain-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/setup.py" -nt "$STAMP" ]; then
    echo "==> installing swarmtrain ($TORCH_PIN)"
    python -m pip install --quiet --upgrade pip
    python -m pip install --quiet "$TORCH_PIN"
    python -m pip install --quiet -e "$ROOT[dev,plot]"
    touch "$STAMP"
fi
cd "$ROOT"
