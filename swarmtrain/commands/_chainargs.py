"""Bittensor-style flags shared by the chain commands, and their one-line error handling.

``--wallet.name/--wallet.hotkey/--wallet.path``, ``--subtensor.network`` (or
``--subtensor.chain_endpoint``), ``--netuid``, as btcli spells them. Heavy imports
(bittensor, chain) happen only inside the helpers that run a command.

Example::

    def add_arguments(parser):
        add_network_args(parser)
        add_wallet_args(parser)

    def run(args):
        return run_chain(lambda: _main(args))
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

DEFAULT_NETWORK = "devnet"
REAL_NETWORKS = ("finney", "test")


def add_netuid_arg(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--netuid", type=int, required=required, help="subnet id")


def add_network_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("chain")
    group.add_argument(
        "--subtensor.network",
        dest="network",
        default=DEFAULT_NETWORK,
        help="devnet (default), devnet://HOST:PORT, finney, test, local, or a ws(s):// URL",
    )
    group.add_argument(
        "--subtensor.chain_endpoint",
        dest="chain_endpoint",
        default=None,
        help="explicit endpoint; overrides --subtensor.network",
    )
    group.add_argument(
        "--timeout", type=float, default=30.0, help="seconds allowed per chain call (default 30)"
    )


def add_wallet_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("wallet")
    group.add_argument("--wallet.name", dest="wallet_name", default="default", help="coldkey name")
    group.add_argument(
        "--wallet.hotkey", dest="wallet_hotkey", default="default", help="hotkey name"
    )
    group.add_argument(
        "--wallet.path",
        dest="wallet_path",
        default=None,
        help="wallets directory (default ~/.bittensor/wallets)",
    )


def add_no_prompt_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-prompt",
        "--no_prompt",
        dest="no_prompt",
        action="store_true",
        help="do not ask for confirmation on real networks",
    )


def network_of(args: argparse.Namespace) -> str:
    """The network the user asked for (endpoint flag first)."""
    return args.chain_endpoint or args.network


def wallet_path(args: argparse.Namespace) -> Path:
    if args.wallet_path:
        return Path(args.wallet_path).expanduser()
    return Path.home() / ".bittensor" / "wallets"


def is_real_network(network: str) -> bool:
    """Networks where writes cost real (or test) TAO and deserve a confirmation."""
    return network in REAL_NETWORKS or network.startswith("wss://")


def confirm(question: str, *, assume_yes: bool) -> bool:
    """Ask y/N on the terminal; ``assume_yes`` (``--no-prompt``) skips the question."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        print(f"{question} [y/N]: no terminal to ask; pass --no-prompt to proceed", file=sys.stderr)
        return False
    return input(f"{question} [y/N]: ").strip().lower() in ("y", "yes")


def fail(message: str) -> int:
    """Print one ``error:`` line to stderr and return exit code 1."""
    print(f"error: {message}", file=sys.stderr)
    return 1


def guarded(body: Callable[[], int]) -> int:
    """Run a command body; domain errors become one ``error:`` line (no traceback)."""
    from chain.errors import ChainError

    try:
        return body()
    except (ChainError, ValueError) as err:  # ValueError: bad user input (amounts, weights)
        return fail(str(err))


def run_chain(make_coro: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """``asyncio.run`` a command's coroutine under ``guarded``."""
    return guarded(lambda: asyncio.run(make_coro()))
