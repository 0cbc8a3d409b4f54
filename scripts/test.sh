#!/usr/bin/env bash
# Create the virtualenv if needed, install the project, lint, type-check, and run the whole test suite.
set -euo pipefail
. "$(dirname "$0")/_venv.sh"
echo "==> ruff"
ruff check .
echo "==> mypy"
mypy
echo "==> pytest"
python -m pytest -q "$@"
