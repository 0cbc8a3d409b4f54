"""Run the embedded local chain (aiohttp + SQLite) until SIGTERM/SIGINT.

Two entry points share this module: ``python -m chain.devnet`` (what tests start, so the
chain layer never launches the ``swarmtrain`` CLI above it) and ``swarmtrain devnet`` (a thin
alias that also sets up the project's key=value logging). The chain's flags
(``--block-time``, ``--tempo``, ...) are generated from ``DevnetConfig``'s fields.

Example:
    $ python -m chain.devnet --state ./devnet-state --block-time 0.5
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from protocol.flags import (
    FlagSpec,
    SettingsError,
    add_flags,
    flag_specs,
    namespace_values,
    validate,
)

if TYPE_CHECKING:
    from chain.devnet.params import DevnetConfig
    from chain.devnet.server import BlockReport

HELP = "Run the embedded local chain that the miner, validator and tests use."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9946, help="port (default 9946)")
    parser.add_argument("--state", type=Path, default=Path.home() / ".swarmtrain" / "devnet",
                        help="state directory; the chain continues from it on restart")
    add_flags(parser, config_flags())
    parser.add_argument("--quiet", action="store_true", help="print only the URL and errors")


def run(args: argparse.Namespace) -> int:
    """Check the settings, open the state, serve until stopped; the exit code (logging set up by the caller)."""
    import asyncio

    try:
        cfg = config_from(args)
    except SettingsError as error:
        _say(f"invalid devnet settings: {error}", err=True)
        return 2
    # heavy (torch): after the checks
    from chain.devnet.blockchain import Devnet, StateFormatError, StateInUseError
    from chain.devnet.server import serve

    try:
        devnet = Devnet.open(args.state, cfg)
    except (StateInUseError, StateFormatError) as error:
        _say(str(error), err=True)
        return 1
    head, printer = devnet.head(), _EpochPrinter(quiet=args.quiet)

    def on_ready(url: str) -> None:
        _say(f"devnet ready at {url} (state {args.state}, head block {head}, "
             f"block time {cfg.block_time}s)")

    try:
        asyncio.run(serve(devnet, host=args.host, port=args.port, on_block=printer.on_block,
                          on_ready=on_ready))
    except OSError as error:
        _say(f"devnet could not listen on {args.host}:{args.port}: {error}", err=True)
        return 1
    _say("devnet stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m chain.devnet``: parse, run, return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m chain.devnet", description=HELP)
    add_arguments(parser)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(parser.parse_args(argv))
    except KeyboardInterrupt:
        return 130


def config_flags() -> list[FlagSpec]:
    """``--block-time``, ``--tempo``, ... generated from ``DevnetConfig``'s fields."""
    from chain.devnet.params import DevnetConfig

    return flag_specs(DevnetConfig)


def config_from(args: argparse.Namespace) -> DevnetConfig:
    """The ``DevnetConfig`` of the parsed flags; ``SettingsError`` naming the bad flag."""
    from chain.devnet.params import DevnetConfig

    specs = config_flags()
    return validate(DevnetConfig, namespace_values(specs, args), specs)


def _say(text: str, *, err: bool = False) -> bool:
    """Print one line; False once the stream is gone (a closed pipe must not stop the chain)."""
    try:
        print(text, file=sys.stderr if err else sys.stdout, flush=True)
    except OSError:
        return False
    return True


class _EpochPrinter:
    """One line per epoch, until stdout goes away."""

    def __init__(self, quiet: bool) -> None:
        self.enabled = not quiet

    def on_block(self, report: BlockReport) -> None:
        for epoch in report.epochs if self.enabled else ():
            self.enabled = _say(
                f"block {epoch.block}: epoch netuid {epoch.netuid}: {epoch.neurons} uids, "
                f"{epoch.validators} permits, {epoch.emitted_rao / 1e9:.3f} alpha emitted "
                f"({epoch.owner_rao / 1e9:.3f} owner cut)"
            )
