"""`swarmtrain stake add`: stake TAO from a wallet's coldkey onto its own hotkey.

    swarmtrain stake add --netuid 1 --amount 100 --wallet.name validator --wallet.hotkey default

A local validator needs stake to hold a validator permit. On the devnet the
coldkey is funded by the devnet's faucet; on finney/test the amount is real TAO
and is confirmed first unless ``--no-prompt``.
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
    from chain.wallets import Wallet

NAME = "stake"
HELP = "stake TAO onto a wallet's hotkey (so a validator gets a permit)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="stake_action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="stake TAO from the coldkey onto the wallet's hotkey")
    add_netuid_arg(add)
    add.add_argument("--amount", type=float, required=True, help="TAO to stake")
    add_network_args(add)
    add_wallet_args(add)
    add_no_prompt_arg(add)


def run(args: argparse.Namespace) -> int:
    return guarded(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    if not args.amount > 0:
        raise ValueError(f"--amount must be positive, got {args.amount}")
    wallet = open_wallet(args)
    wallet.unlock_coldkey()  # an encrypted coldkey asks for its password here
    return asyncio.run(_add(args, wallet))


async def _add(args: argparse.Namespace, wallet: Wallet) -> int:
    from chain.client import Chain
    from chain.wallets import coldkey_address, hotkey_address

    network = network_of(args)
    hotkey = hotkey_address(wallet)
    question = f"stake τ{args.amount} onto {hotkey} on netuid {args.netuid}?"
    if is_real_network(network) and not await asyncio.to_thread(
        confirm, question, assume_yes=args.no_prompt
    ):
        print("aborted")
        return 1
    async with await Chain.connect(network, timeout=subtensor_of(args).timeout_s) as chain:
        check_balance(coldkey_address(wallet), await chain.balance(coldkey_address(wallet)), args.amount)
        await chain.add_stake(wallet, args.netuid, args.amount)
        mg = await chain.metagraph(args.netuid)
    uid = mg.uid_of(hotkey)
    stake = mg.stake[uid] if uid is not None else 0.0
    print(f"staked τ{args.amount:g} onto {hotkey} on netuid {args.netuid}; stake now τ{stake:.4f}")
    return 0


def check_balance(coldkey: str, balance_tao: float, amount_tao: float) -> None:
    """Refuse, in TAO, a stake the coldkey cannot pay (before any extrinsic is sent)."""
    if amount_tao > balance_tao:
        raise ValueError(
            f"coldkey {coldkey} holds τ{balance_tao:.4f}, less than the τ{amount_tao:g} to stake: "
            f"pass a smaller --amount (at most τ{balance_tao:.4f}, less the fee) or fund the coldkey first"
        )
