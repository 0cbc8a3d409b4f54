"""`swarmtrain register`: give a wallet's hotkey a uid on a subnet (burned or proof of work).

    swarmtrain register --netuid 1 --subtensor.network devnet \\
        --wallet.name miner1 --wallet.hotkey default

On finney/test the current burn (recycled TAO) is shown and confirmed first
unless ``--no-prompt``. Registering an already registered hotkey just prints its uid.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from swarmtrain.commands._chainargs import (
    add_netuid_arg,
    add_network_args,
    add_no_prompt_arg,
    add_wallet_args,
    confirm,
    guarded,
    is_real_network,
    network_of,
    open_wallet,
    subtensor_of,
)

if TYPE_CHECKING:
    from chain.client import Chain
    from chain.wallets import Wallet

NAME = "register"
HELP = "register a wallet's hotkey on a subnet (burned TAO or --pow)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_netuid_arg(parser)
    add_network_args(parser)
    add_wallet_args(parser)
    parser.add_argument(
        "--pow", action="store_true", help="proof-of-work instead of a burn (if the subnet allows)"
    )
    parser.add_argument(
        "--pow-timeout", type=float, default=300.0, help="seconds allowed for mining (default 300)"
    )
    add_no_prompt_arg(parser)


def run(args: argparse.Namespace) -> int:
    return guarded(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    wallet = open_wallet(args)
    wallet.unlock_coldkey()  # an encrypted coldkey asks for its password here, before any chain call
    return asyncio.run(_register(args, wallet))


async def _register(args: argparse.Namespace, wallet: Wallet) -> int:
    from chain.client import Chain
    from chain.wallets import coldkey_address, hotkey_address

    network = network_of(args)
    hotkey = hotkey_address(wallet)
    async with await Chain.connect(network, timeout=subtensor_of(args).timeout_s) as chain:
        uid = await chain.uid_of(args.netuid, hotkey)
        if uid is not None:
            print(f"{hotkey} is already registered on netuid {args.netuid} as uid {uid}")
            return 0
        if is_real_network(network) and not await _confirm_cost(
            chain, args, coldkey_address(wallet)
        ):
            print("aborted")
            return 1
        uid = await chain.register(wallet, args.netuid, pow=args.pow, pow_timeout=args.pow_timeout)
    print(f"registered {hotkey} on netuid {args.netuid} as uid {uid}")
    return 0


async def _confirm_cost(chain: Chain, args: argparse.Namespace, coldkey: str) -> bool:
    """Show what registering costs right now and ask to go on."""
    hp = await chain.hyperparameters(args.netuid)
    balance = await chain.balance(coldkey)
    if args.pow:
        question = f"register on netuid {args.netuid} by proof of work (no burn)?"
    else:
        question = (
            f"register on netuid {args.netuid} for a burn of τ{hp.burn:.9f} "
            f"(coldkey balance τ{balance:.9f})?"
        )
    return await asyncio.to_thread(confirm, question, assume_yes=args.no_prompt)
