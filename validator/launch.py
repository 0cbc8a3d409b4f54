"""Build a validator from its settings and run it (what ``swarmtrain validator`` calls).

Example:
    >>> asyncio.run(launch(ValidatorSettings(netuid=1, wallet=WalletSettings(name="v"))))
"""

from __future__ import annotations

import asyncio
import logging
import signal

from chain.client import Chain
from chain.wallets import load_wallet
from node.devices import resolve_device
from node.logs import progress_line
from node.subnet_setup import load_subnet_config, subnet_dataset
from protocol.subnet import SubnetConfig
from validator.service import Validator
from validator.settings import ValidatorSettings

log = logging.getLogger("swarmtrain.validator")


def subnet_config(s: ValidatorSettings) -> SubnetConfig:
    """The subnet config file if given (its netuid must agree), else defaults for the netuid."""
    cfg = load_subnet_config(s.subnet_config, s.netuid)
    if s.subnet_config is None:
        log.warning(progress_line(
            "no --subnet-config given: using the default config; a validator whose config is not the lead's "
            "refuses to start", config_hash=cfg.config_hash()[:12],
            fix=f"swarmtrain subnet fetch --netuid {s.netuid} --out subnet.json (a new subnet: swarmtrain subnet init)"))
    return cfg


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread / not supported
            log.debug(progress_line("cannot install a signal handler", signal=sig))


async def launch(s: ValidatorSettings) -> None:
    """Connect, build, start, run until SIGINT/SIGTERM (or max windows), close."""
    cfg = subnet_config(s)
    resolve_device(s.device)  # refuse a device this machine lacks before loading anything
    wallet = load_wallet(s.wallet.name, s.wallet.hotkey, s.wallet.path)
    dataset = await asyncio.to_thread(subnet_dataset, cfg)
    chain = await Chain.connect(s.subtensor.endpoint, timeout=s.subtensor.timeout_s)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    try:
        validator = Validator(chain, wallet, cfg, s, dataset)
        try:
            await validator.start()
            log.info(progress_line("validator serving", uid=validator.uid, hotkey=validator.hotkey,
                                   w=validator.state.model.window))
            await validator.run(stop=stop, max_windows=s.max_windows)
        finally:
            await validator.close()
    finally:
        await chain.close()
