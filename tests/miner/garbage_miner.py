"""A faulty miner for end-to-end tests: trains like any miner, then sends garbage.

Run as ``python -m tests.miner.garbage_miner <swarmtrain miner flags>`` from the
repository root. Even windows send random bytes (not a codec payload at all); odd
windows send a well-formed codec payload whose values are NaN, built by hand so the
codec's own encoder cannot refuse it. A validator must refuse both.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from torch import Tensor

from miner.service import Miner
from swarmtrain.commands import miner as miner_command


def nan_payload(payload: bytes) -> bytes:
    """A codec payload with its last 4 bytes (part of a value section) set to a float NaN."""
    return payload[:-4] + np.float32("nan").tobytes()


class GarbageMiner(Miner):
    """Sends random bytes or a NaN-poisoned payload instead of its real update."""

    def encode_update(self, delta: dict[str, Tensor]) -> bytes:
        honest = super().encode_update(delta)
        if self.clock_window % 2 == 0:
            return os.urandom(len(honest))
        return nan_payload(honest)

    @property
    def clock_window(self) -> int:
        return int(self.model.window)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="garbage_miner")
    miner_command.add_arguments(parser)
    return miner_command.run(parser.parse_args(argv), GarbageMiner)


if __name__ == "__main__":
    sys.exit(main())
