"""Build a validator from plain operator settings and run it (what ``swarmtrain validator`` calls).

Example:
    >>> asyncio.run(launch(LaunchSettings(network="devnet", netuid=1, wallet_name="v"), vsettings))
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from chain.client import Chain
from chain.wallets import load_wallet
from node.subnet_setup import load_subnet_config, subnet_dataset
from validator.service import Validator
from validator.settings import ValidatorSettings

log = logging.getLogger("swarmtrain.validator")


@dataclass(frozen=True)
class LaunchSettings:
    """Chain and wallet choices of the operator."""

    network: str
    netuid: int
    wallet_name: str
    wallet_hotkey: str = "default"
    wallet_path: Path | None = None
    subnet_config: Path | None = None
    chain_timeout_s: float = 30.0
    max_windows: int | None = None


def default_state_dir(s: LaunchSettings) -> Path:
    return Path.home() / ".swarmtrain" / "validator" / f"{s.wallet_name}-{s.wallet_hotkey}-netuid{s.netuid}"


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread / not supported
            log.debug("cannot install a handler for %s", sig)


async def launch(s: LaunchSettings, vs: ValidatorSettings) -> None:
    """Connect, build, start, run until SIGINT/SIGTERM (or max windows), close."""
    cfg = load_subnet_config(s.subnet_config, s.netuid)
    wallet = load_wallet(s.wallet_name, s.wallet_hotkey, s.wallet_path)
    dataset = await asyncio.to_thread(subnet_dataset, cfg)
    chain = await Chain.connect(s.network, timeout=s.chain_timeout_s)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    try:
        validator = Validator(chain, wallet, cfg, vs, dataset)
        try:
            await validator.start()
            log.info("validator uid-hotkey %s serving window %d", validator.hotkey, validator.state.model.window)
            await validator.run(stop=stop, max_windows=s.max_windows)
        finally:
            await validator.close()
    finally:
        await chain.close()
