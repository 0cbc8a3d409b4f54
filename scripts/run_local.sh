#!/usr/bin/env bash
# Run a whole swarmtrain network on this machine: devnet, one validator, miners.
# Creates the virtualenv on first use, then runs `swarmtrain local`, whose defaults
# (swarmtrain/local_settings.py: 3 miners, 8 windows, tiny preset, 0.5 s blocks, out
# runs/local) finish in a few minutes on 2 CPU cores. Flags pass through, e.g.
# ./scripts/run_local.sh --miners 2 --windows 6 --out runs/mine; so do the
# SWARMTRAIN_LOCAL_* variables (SWARMTRAIN_LOCAL_OUT=runs/b).
set -euo pipefail
. "$(dirname "$0")/_venv.sh"

echo "==> swarmtrain local $*"
swarmtrain local "$@"
