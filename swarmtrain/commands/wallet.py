"""`swarmtrain wallet create|show`: make or inspect a bittensor wallet (coldkey + hotkey).

swarmtrain wallet create --wallet.name miner1 --wallet.hotkey default --no-password
"""

from __future__ import annotations

import argparse

from swarmtrain.commands._chainargs import add_wallet_args, fail, open_wallet, wallet_of

NAME = "wallet"
HELP = "create or show a wallet (coldkey + hotkey), as btcli would"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="wallet_action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a coldkey (if missing) and a hotkey")
    add_wallet_args(create)
    create.add_argument(
        "--no-password",
        "--no_password",
        dest="no_password",
        action="store_true",
        help="store the coldkey unencrypted (fine for devnet; never on finney)",
    )
    create.add_argument(
        "--overwrite", action="store_true", help="replace an existing wallet's keys"
    )
    show = sub.add_parser("show", help="print a wallet's ss58 addresses")
    add_wallet_args(show)


def run(args: argparse.Namespace) -> int:
    from chain.errors import WalletError

    try:
        if args.wallet_action == "create":
            return _create(args)
        return _show(args)
    except WalletError as err:
        return fail(str(err))


def _create(args: argparse.Namespace) -> int:
    import sys

    from chain.wallets import coldkey_address, coldkey_exists, create_wallet, hotkey_address

    w = wallet_of(args)
    new_coldkey = args.overwrite or not coldkey_exists(w.name, w.directory)
    asks_password = not args.no_password and new_coldkey
    if asks_password and not sys.stdin.isatty():
        return fail(
            "a new coldkey is encrypted with a password typed on the terminal, and there is no terminal "
            "here: run the command in a terminal, or pass --no-password (unencrypted coldkey: for devnet "
            "keys only, never for keys holding real TAO)"
        )
    try:
        wallet = create_wallet(w.name, w.hotkey, w.directory, overwrite=args.overwrite,
                               use_password=not args.no_password)
    except (EOFError, KeyboardInterrupt):
        return fail("no password was entered: the wallet was not created (pass --no-password for devnet keys)")
    print(f"wallet   {w.name}/{w.hotkey} at {w.directory}")
    print(f"coldkey  {coldkey_address(wallet)}")
    print(f"hotkey   {hotkey_address(wallet)}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from chain.wallets import coldkey_address, hotkey_address

    wallet = open_wallet(args)
    print(f"coldkey  {coldkey_address(wallet)}")
    print(f"hotkey   {hotkey_address(wallet)}")
    return 0
