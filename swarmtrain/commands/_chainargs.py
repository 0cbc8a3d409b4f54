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
from typing import TYPE_CHECKING, Any

from node.settings import SubtensorSettings, WalletSettings
from protocol.flags import add_flags, flag_specs, namespace_values, validate

if TYPE_CHECKING:
    import bittensor as bt

REAL_NETWORKS = ("finney", "test")
SUBTENSOR_FLAGS = flag_specs(SubtensorSettings, prefix="subtensor.", path=("subtensor",), group="subtensor")
WALLET_FLAGS = flag_specs(WalletSettings, prefix="wallet.", path=("wallet",), group="wallet")


def add_netuid_arg(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--netuid", type=int, required=required, help="subnet id")


def add_network_args(parser: argparse.ArgumentParser) -> None:
    """``--subtensor.network``, ``--subtensor.chain_endpoint``, ``--timeout`` (from ``SubtensorSettings``)."""
    add_flags(parser, SUBTENSOR_FLAGS)


def add_wallet_args(parser: argparse.ArgumentParser) -> None:
    """``--wallet.name``, ``--wallet.hotkey``, ``--wallet.path`` (from ``WalletSettings``)."""
    add_flags(parser, WALLET_FLAGS)


def subtensor_of(args: argparse.Namespace) -> SubtensorSettings:
    """The chain flags given, over ``SubtensorSettings``' defaults."""
    return validate(SubtensorSettings, namespace_values(SUBTENSOR_FLAGS, args).get("subtensor", {}),
                    SUBTENSOR_FLAGS)


def wallet_of(args: argparse.Namespace) -> WalletSettings:
    """The wallet flags given, over ``WalletSettings``' defaults."""
    return validate(WalletSettings, namespace_values(WALLET_FLAGS, args).get("wallet", {}), WALLET_FLAGS)


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
    return subtensor_of(args).endpoint


def wallet_path(args: argparse.Namespace) -> Path:
    return wallet_of(args).directory


def open_wallet(args: argparse.Namespace) -> bt.Wallet:
    """The wallet the flags name (``bittensor.Wallet``; keys are read lazily)."""
    from chain.wallets import load_wallet

    w = wallet_of(args)
    return load_wallet(w.name, w.hotkey, w.directory)


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
