"""`swarmtrain devnet`: run the embedded local chain (``chain.devnet.cli``, also ``python -m chain.devnet``)."""

from __future__ import annotations

from chain.devnet.cli import HELP, add_arguments, run

NAME = "devnet"
__all__ = ["HELP", "NAME", "add_arguments", "run"]
