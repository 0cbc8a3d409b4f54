"""Run the embedded local chain (aiohttp + SQLite) until SIGTERM/SIGINT.

Two entry points share this module: ``python -m chain.devnet`` (what tests start, so the
chain layer never launches the ``swarmtrain`` CLI above it) and ``swarmtrain devnet``.

Example:
    $ python -m chain.devnet --state ./devnet-state --block-time 0.5
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

HELP = "Run the embedded local chain that the miner, validator and tests use."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9946, help="port (default 9946)")
    parser.add_argument("--state", type=Path, default=Path.home() / ".swarmtrain" / "devnet",
                        help="state directory; the chain continues from it on restart")
    parser.add_argument("--block-time", type=float, default=1.0,
                        help="seconds between blocks (sub-second allowed; default 1.0)")
    parser.add_argument("--tempo", type=int, default=10,
                        help="blocks between epochs of new subnets (default 10)")
    parser.add_argument("--faucet-tao", type=float, default=1000.0,
                        help="free balance every account starts with (default 1000)")
    parser.add_argument("--emission-tao-per-block", type=float, default=1.0,
                        help="alpha minted per block and paid out at each epoch (default 1)")
    parser.add_argument("--burn-tao", type=float, default=0.1,
                        help="registration burn of new subnets (default 0.1)")
    parser.add_argument("--max-allowed-uids", type=int, default=256,
                        help="uids per new subnet before registration prunes (default 256)")
    parser.add_argument("--immunity-period", type=int, default=50,
                        help="blocks a new uid cannot be pruned (default 50)")
    parser.add_argument("--quiet", action="store_true", help="print only the URL and errors")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from pydantic import ValidationError

    logging.basicConfig(level=logging.WARNING)
    try:
        cfg = _config(args)
    except ValidationError as error:
        _say(f"invalid devnet settings: {error.errors()[0]['msg']}", err=True)
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
    try:
        return run(parser.parse_args(argv))
    except KeyboardInterrupt:
        return 130


def _config(args: argparse.Namespace):
    from chain.devnet.params import DevnetConfig

    return DevnetConfig(
        block_time=args.block_time, tempo=args.tempo, faucet_tao=args.faucet_tao,
        emission_tao_per_block=args.emission_tao_per_block, burn_tao=args.burn_tao,
        max_allowed_uids=args.max_allowed_uids, immunity_period=args.immunity_period,
    )


def _say(text: str, *, err: bool = False) -> bool:
    """Print one line; False once the stream is gone (a closed pipe must not stop the chain)."""
    try:
        print(text, file=sys.stderr if err else sys.stdout, flush=True)
    except OSError:
        return False
    return True


class _EpochPrinter:
    """One line per epoch, until stdout goes away."""

    def __init__(self, quiet: bool):
        self.enabled = not quiet

    def on_block(self, report) -> None:
        for epoch in report.epochs if self.enabled else ():
            self.enabled = _say(
                f"block {epoch.block}: epoch netuid {epoch.netuid}: {epoch.neurons} uids, "
                f"{epoch.validators} permits, {epoch.emitted_rao / 1e9:.3f} alpha emitted "
                f"({epoch.owner_rao / 1e9:.3f} owner cut)"
            )
