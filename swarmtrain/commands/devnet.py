"""`swarmtrain devnet`: run the embedded local chain (``chain.devnet.cli``, also ``python -m chain.devnet``).

A thin alias: the flags (generated from ``DevnetConfig``) and the run live in
``chain.devnet.cli``; this adds the project's logging set-up (one key=value line per record).
"""

from __future__ import annotations

import argparse

from chain.devnet.cli import HELP, add_arguments
from chain.devnet.cli import run as run_devnet

NAME = "devnet"
__all__ = ["HELP", "NAME", "add_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    from node.logs import setup_logging

    setup_logging("WARNING")
    return run_devnet(args)
