"""`swarmtrain devnet`: run the embedded local chain (aiohttp + SQLite) until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from swarmtrain.flags import (
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

NAME = "devnet"
HELP = "Run the embedded local chain that the miner, validator and tests use."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9946, help="port (default 9946)")
    parser.add_argument("--state", type=Path, default=Path.home() / ".swarmtrain" / "devnet",
                        help="state directory; the chain continues from it on restart")
    add_flags(parser, _config_flags())
    parser.add_argument("--quiet", action="store_true", help="print only the URL and errors")


def run(args: argparse.Namespace) -> int:
    import asyncio

    from node.logs import setup_logging

    setup_logging("WARNING")
    try:
        cfg = _config(args)
    except SettingsError as error:
        _say(f"invalid devnet settings: {error}", err=True)
        return 2
    # heavy (torch): after the checks
    from chain.devnet.ledger import Devnet, StateFormatError, StateInUseError
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


def _config_flags() -> list[FlagSpec]:
    """``--block-time``, ``--tempo``, ... generated from ``DevnetConfig``'s fields."""
    from chain.devnet.params import DevnetConfig

    return flag_specs(DevnetConfig)


def _config(args: argparse.Namespace) -> DevnetConfig:
    from chain.devnet.params import DevnetConfig

    specs = _config_flags()
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
