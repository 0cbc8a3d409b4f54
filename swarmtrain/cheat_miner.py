"""A cheating outputs-mode miner process: ``python -m swarmtrain.cheat_miner --cheat NAME <miner flags>``.

What ``swarmtrain local --cheat NAME`` starts beside the honest miners, to show that the
validators pay it nothing (``miner.cheats`` lists the cheats). Not for real subnets.
"""

from __future__ import annotations

import argparse
import sys

from miner.cheats import CHEATS
from swarmtrain.commands import miner as miner_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swarmtrain.cheat_miner")
    parser.add_argument("--cheat", choices=sorted(CHEATS), required=True, help="how this miner cheats")
    miner_command.add_arguments(parser)
    args = parser.parse_args(argv)
    return miner_command.run(args, CHEATS[args.cheat])


if __name__ == "__main__":
    sys.exit(main())
