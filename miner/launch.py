"""Build a miner from plain settings and run it (what ``swarmtrain miner`` calls).

Kept apart from the CLI so tests and faulty-miner scripts can launch a ``Miner``
subclass with the same wiring.

Example:
    >>> settings = MinerSettings(netuid=1, wallet=WalletSettings(name="m1"))
    >>> asyncio.run(launch(settings))
"""

from __future__ import annotations

import logging
from typing import Any

from chain.client import Chain
from chain.wallets import load_wallet
from miner.service import Miner
from miner.settings import MinerSettings
from miner.state import MinerStateStore
from miner.trainer import InnerTrainer
from node.logs import progress_line
from node.metrics import CountingClient, MetricsServer, MinerTelemetry, ObservedMetricsWriter
from node.signed_http import SignedClient
from node.subnet_setup import load_subnet_config, subnet_dataset
from protocol.model import subnet_model_config
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


def task_parts(cfg: SubnetConfig, s: MinerSettings, miner_cls: type[Miner]) -> tuple[type[Miner], dict[str, Any]]:
    """The miner class and its work part: an inner trainer (gradients) or the teacher (outputs)."""
    if cfg.task == "outputs":
        from miner.teacher import OutputsMiner, build_labeler

        cls = miner_cls if issubclass(miner_cls, OutputsMiner) else OutputsMiner
        return cls, {"labeler": build_labeler(cfg, s.device, s.teacher)}
    trainer = InnerTrainer(subnet_model_config(cfg), lr=cfg.inner_lr, weight_decay=cfg.inner_weight_decay, device=s.device)
    return miner_cls, {"trainer": trainer}


async def launch(s: MinerSettings, miner_cls: type[Miner] = Miner) -> None:
    """Wire chain, wallet, data, trainer or teacher, state and HTTP client into a miner and run it."""
    cfg = subnet_config(s)
    wallet = load_wallet(s.wallet.name, s.wallet.hotkey, s.wallet.path)
    dataset = subnet_dataset(cfg)
    directory = s.state_path
    miner_cls, work = task_parts(cfg, s, miner_cls)
    log.info(progress_line("miner", wallet=s.wallet.name, network=s.subtensor.endpoint, netuid=cfg.netuid,
                           task=cfg.task, device=s.device, state=directory))
    telemetry = MinerTelemetry()
    server = None
    if s.metrics:
        server = await MetricsServer.start(telemetry.registry, s.metrics_host, s.metrics_port)
    chain = await Chain.connect(s.subtensor.endpoint, timeout=s.subtensor.timeout_s)
    client = CountingClient(SignedClient(wallet, timeout=s.http_timeout_s), telemetry)
    try:
        miner = miner_cls(
            chain=chain, wallet=wallet, cfg=cfg, dataset=dataset, **work,
            store=MinerStateStore(directory), client=client,
            metrics=ObservedMetricsWriter(directory / "metrics.jsonl", telemetry.on_record), options=s.options,
        )
        await miner.run(max_windows=s.max_windows)
    finally:
        await client.close()
        await chain.close()
        if server is not None:
            await server.stop()
