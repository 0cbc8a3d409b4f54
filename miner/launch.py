"""Build a miner from plain settings and run it (what ``swarmtrain miner`` calls).

Kept apart from the CLI so tests and faulty-miner scripts can launch a ``Miner``
subclass with the same wiring.

Example:
    >>> settings = MinerSettings(netuid=1, wallet=WalletSettings(name="m1"))
    >>> asyncio.run(launch(settings))
"""

from __future__ import annotations

import logging
from pathlib import Path

from chain.client import connect_when_up
from chain.wallets import load_wallet
from miner.service import Miner
from miner.settings import MinerSettings
from miner.state import MinerStateStore
from miner.trainer import InnerTrainer
from node.logs import progress_line
from node.metrics import CountingClient, MetricsServer, MinerTelemetry, ObservedMetricsWriter
from node.signed_http import SignedClient
from node.state_lock import StateLock, sweep_temporaries
from node.subnet_setup import load_subnet_config, subnet_dataset
from protocol.model import subnet_model_config
from protocol.retry import Outage
from protocol.subnet import SubnetConfig

log = logging.getLogger("swarmtrain.miner")


def subnet_config(s: MinerSettings) -> SubnetConfig:
    """The subnet config file if given (its netuid/preset must agree), else defaults."""
    cfg = load_subnet_config(s.subnet_config, s.netuid, s.preset)
    if s.subnet_config is None:
        log.warning(progress_line(
            "no --subnet-config given: using the default config; if the lead validator runs another, the miner "
            "stops and says which fields differ", config_hash=cfg.config_hash()[:12],
            fix=f"swarmtrain subnet fetch --netuid {s.netuid} --out subnet.json"))
    return cfg


def restart_outage(endpoint: str, checkpoint: Path | None) -> Outage | None:
    """A miner restarted on its own state waits for the chain (it may be restarting too); a
    first start without a chain is an error line (most likely a wrong endpoint)."""
    if checkpoint is None:
        return None
    return Outage("the chain", endpoint, log, hint="restarting on existing state: waiting for it to answer")


async def launch(s: MinerSettings, miner_cls: type[Miner] = Miner) -> None:
    """Lock the state directory (``StateLockedError`` names the pid holding it), then run."""
    with StateLock.acquire(s.state_path, role="miner") as lock:
        swept = sweep_temporaries(lock.directory)
        if swept:
            log.info(progress_line("removed temporary files a crashed write left", count=len(swept), state=lock.directory))
        await _run(s, miner_cls)


async def _run(s: MinerSettings, miner_cls: type[Miner]) -> None:
    """Wire chain, wallet, data, trainer, state and HTTP client into a miner and run it."""
    cfg = subnet_config(s)
    wallet = load_wallet(s.wallet.name, s.wallet.hotkey, s.wallet.path)
    dataset = subnet_dataset(cfg)
    directory = s.state_path
    trainer = InnerTrainer(subnet_model_config(cfg), lr=cfg.inner_lr, weight_decay=cfg.inner_weight_decay, device=s.device)
    log.info(progress_line("miner", wallet=s.wallet.name, network=s.subtensor.endpoint, netuid=cfg.netuid,
                           device=trainer.device, state=directory))
    telemetry = MinerTelemetry()
    server = None
    if s.metrics:
        server = await MetricsServer.start(telemetry.registry, s.metrics_host, s.metrics_port)
    chain = await connect_when_up(s.subtensor.endpoint, timeout=s.subtensor.timeout_s,
                                  outage=restart_outage(s.subtensor.endpoint, MinerStateStore(directory).latest_dir()))
    client = CountingClient(SignedClient(wallet, timeout=s.http_timeout_s), telemetry)
    try:
        miner = miner_cls(
            chain=chain, wallet=wallet, cfg=cfg, dataset=dataset, trainer=trainer,
            store=MinerStateStore(directory), client=client,
            metrics=ObservedMetricsWriter(directory / "metrics.jsonl", telemetry.on_record), options=s.options,
        )
        await miner.run(max_windows=s.max_windows)
    finally:
        await client.close()
        await chain.close()
        if server is not None:
            await server.stop()
