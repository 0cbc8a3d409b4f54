"""A faulty miner for end-to-end tests: trains like any miner, then sends garbage.

Run as ``python -m tests.miner.garbage_miner <swarmtrain miner flags>`` from the
repository root. Even windows send random bytes (not a codec payload at all); odd
windows send a well-formed codec payload whose value table holds a NaN, patched in
after encoding (the codec's encoder refuses NaN). A validator must refuse both.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from torch import Tensor

from miner.service import Miner
from protocol import codec
from protocol.bitpack import varint
from swarmtrain.commands import miner as miner_command


def nan_payload(update: codec.SparseUpdate, cfg: codec.CodecConfig) -> bytes:
    """The encoded ``update`` with the first value-table entry of its last tensor set to NaN.

    The payload ends with the last tensor's record (docs/codec.md): varint value count,
    orientation and count-parameter bytes, then the value table; the record is the same
    bytes as when that tensor is encoded alone, so its offset follows from that encoding.
    """
    payload = codec.encode(update, cfg)
    name, last = list(update.items())[-1]
    record = codec.encode({name: last}, cfg)[len(codec.encode({}, cfg)) :]
    start = len(payload) - len(record) + len(varint(len(last.values))) + 2
    return payload[:start] + np.float32("nan").tobytes() + payload[start + 4 :]


class GarbageMiner(Miner):
    """Trains, then sends random bytes (even windows) or a NaN-poisoned payload (odd)."""

    def encode_update(self, delta: dict[str, Tensor]) -> bytes:
        update = self.error_feedback.step(delta, self.codec_cfg)
        if self.model.window % 2 == 0:
            return os.urandom(len(codec.encode(update, self.codec_cfg)))
        return nan_payload(update, self.codec_cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="garbage_miner")
    miner_command.add_arguments(parser)
    return miner_command.run(parser.parse_args(argv), GarbageMiner)


if __name__ == "__main__":
    sys.exit(main())
