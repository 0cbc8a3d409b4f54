#!/usr/bin/env bash
# Run a whole swarmtrain network on this machine: devnet, one validator, miners.
# Creates the virtualenv on first use, then runs `swarmtrain local` with defaults
# that finish in a few minutes on 2 CPU cores. Extra flags are passed through and
# win over the defaults, e.g. ./scripts/run_local.sh --miners 2 --windows 6 --out runs/mine
set -euo pipefail
. "$(dirname "$0")/_venv.sh"

OUT="${SWARMTRAIN_LOCAL_OUT:-runs/local}"
echo "==> swarmtrain local $*"
swarmtrain local --out "$OUT" --miners 3 --windows 8 --preset tiny \
    --block-time 0.5 --tempo 20 --blocks-per-window 20 "$@"
