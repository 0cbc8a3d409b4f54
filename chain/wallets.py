"""Create and load bittensor wallets without interactive prompts.

Example::

    w = create_wallet("miner1", "default", tmp_path / "wallets")
    same = load_wallet("miner1", "default", tmp_path / "wallets")
    assert same.hotkeypub.ss58_address == w.hotkeypub.ss58_address
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import bittensor as bt
from bittensor.keyfiles import KeyfileError
from bittensor.signing import Signer

from chain.errors import WalletError, WalletExistsError, WalletNotFoundError

PathLike = str | os.PathLike[str]


class Wallet(Protocol):
    """What the nodes need of a wallet: its keypairs, which the SDK signs with.

    A ``bittensor.Wallet`` in a node; in tests any object carrying keypairs. It is the
    shape of the SDK's ``bittensor.signing.KeyedWallet``, so it goes to every SDK call
    that takes a wallet.
    """

    @property
    def coldkey(self) -> Signer: ...

    @property
    def coldkeypub(self) -> Signer: ...

    @property
    def hotkey(self) -> Signer: ...


def default_wallet_path() -> Path:
    """``~/.bittensor/wallets`` resolved now (the SDK's constant is fixed at import time)."""
    return Path.home() / ".bittensor" / "wallets"


def _wallet(name: str, hotkey: str, path: PathLike | None) -> bt.Wallet:
    root = Path(path).expanduser() if path is not None else default_wallet_path()
    return bt.Wallet(name=name, hotkey=hotkey, path=str(root))


def wallet_exists(name: str, hotkey: str, path: PathLike | None = None) -> bool:
    """True when both the coldkey's public file and the hotkey file are present."""
    w = _wallet(name, hotkey, path)
    return w.coldkeypub_file.exists_on_device() and w.hotkey_file.exists_on_device()


def coldkey_exists(name: str, path: PathLike | None = None) -> bool:
    """True when the wallet's coldkey (its public file) is present."""
    return bool(_wallet(name, "default", path).coldkeypub_file.exists_on_device())


def create_wallet(
    name: str,
    hotkey: str,
    path: PathLike | None = None,
    overwrite: bool = False,
    *,
    use_password: bool = False,
) -> bt.Wallet:
    """Create the coldkey (unless it exists) and the hotkey; never prompts unless ``use_password``.

    An existing coldkey is reused (a second hotkey for the same owner); an existing
    hotkey raises ``WalletExistsError`` unless ``overwrite``. ``use_password=True``
    encrypts the new coldkey with a password the SDK asks for on the terminal.
    """
    w = _wallet(name, hotkey, path)
    if w.hotkey_file.exists_on_device() and not overwrite:
        raise WalletExistsError(
            f"wallet {name}/{hotkey} already exists under {w.path}",
            reason="pass --overwrite (overwrite=True) to replace it",
        )
    try:
        if overwrite or not w.coldkeypub_file.exists_on_device():
            w.create_new_coldkey(use_password=use_password, suppress=True, overwrite=overwrite)
        w.create_new_hotkey(use_password=False, suppress=True, overwrite=overwrite)
    except (OSError, ValueError, KeyfileError, bt.BittensorError) as err:
        raise WalletError(f"could not create wallet {name}/{hotkey}", reason=str(err)) from err
    return w


def load_wallet(name: str, hotkey: str, path: PathLike | None = None) -> bt.Wallet:
    """The wallet at ``path/name`` with hotkey ``hotkey``; ``WalletNotFoundError`` if files are missing.

    Keys are read lazily by the SDK; an encrypted coldkey asks for its password
    only when something has to be signed with it.
    """
    w = _wallet(name, hotkey, path)
    missing = [f.path for f in (w.coldkeypub_file, w.hotkey_file) if not f.exists_on_device()]
    if missing:
        raise WalletNotFoundError(
            f"wallet {name}/{hotkey} not found under {w.path}",
            reason="missing " + ", ".join(missing) + " (create it with `swarmtrain wallet create`)",
        )
    return w


def hotkey_address(wallet: Wallet) -> str:
    """The wallet's hotkey ss58 address (from a ``bittensor.Wallet``'s public file when present)."""
    if isinstance(wallet, bt.Wallet) and wallet.hotkeypub_file.exists_on_device():
        return wallet.hotkeypub.ss58_address
    return wallet.hotkey.ss58_address


def coldkey_address(wallet: Wallet) -> str:
    """The wallet's coldkey ss58 address, read from the public file (no password needed)."""
    return wallet.coldkeypub.ss58_address
