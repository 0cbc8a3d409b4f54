"""Build a validator from its settings and run it (what ``swarmtrain validator`` calls).

Example:
    >>> asyncio.run(launch(ValidatorSettings(netuid=1, wallet=WalletSettings(name="v"))))
"""

from __future__ import annotations

import asyncio
import logging
import signal

from chain.client import connect_when_up
from chain.wallets import load_wallet
from node.devices import resolve_device
from node.logs import progress_line
from node.state_lock import StateLock, sweep_temporaries
from node.subnet_setup import load_subnet_config, subnet_dataset
from protocol.retry import Outage
from protocol.subnet import SubnetConfig
from validator.service import Validator
from validator.settings import ValidatorSettings
from validator.state import SUBNET_FILE

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
    """Lock the state directory (``StateLockedError`` names the pid holding it), then run."""
    with StateLock.acquire(s.state_path, role="validator") as lock:
        swept = sweep_temporaries(lock.directory)
        if swept:
            log.info(progress_line("removed temporary files a crashed write left", count=len(swept), state=lock.directory))
        await _run(s)


async def _run(s: ValidatorSettings) -> None:
    """Connect, build, start, run until SIGINT/SIGTERM (or max windows), close."""
    cfg = subnet_config(s)
    resolve_device(s.device)  # refuse a device this machine lacks before loading anything
    wallet = load_wallet(s.wallet.name, s.wallet.hotkey, s.wallet.path)
    dataset = await asyncio.to_thread(subnet_dataset, cfg)
    restarted = (s.state_path / SUBNET_FILE).exists()  # a restart waits for the chain; a first start fails fast
    outage = Outage("the chain", s.subtensor.endpoint, log, hint="restarting on existing state") if restarted else None
    chain = await connect_when_up(s.subtensor.endpoint, timeout=s.subtensor.timeout_s, outage=outage)
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
