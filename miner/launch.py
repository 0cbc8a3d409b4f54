"""Build a miner from plain settings and run it (what ``swarmtrain miner`` calls).

Kept apart from the CLI so tests and faulty-miner scripts can launch a ``Miner``
subclass with the same wiring.

Example:
    >>> settings = MinerSettings(network="devnet", netuid=1, wallet_name="m1")
    >>> asyncio.run(launch(settings))
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chain.client import Chain
from chain.wallets import load_wallet
from miner.service import Miner, MinerOptions
from miner.state import MinerStateStore
from miner.trainer import InnerTrainer
from node.metrics import CountingClient, MetricsServer, MinerTelemetry, ObservedMetricsWriter
from node.signed_http import SignedClient
from node.subnet_setup import load_subnet_config, subnet_dataset
from protocol.data import Dataset
from protocol.model import subnet_model_config
from protocol.subnet import SubnetConfig

log = logging.getLogger("swarmtrain.miner")

DEFAULT_METRICS_PORT = 9101


@dataclass(frozen=True)
class MinerSettings:
    """What an operator chooses; everything else comes from the subnet config."""

    network: str
    netuid: int
    wallet_name: str
    wallet_hotkey: str = "default"
    wallet_path: Path | None = None
    device: str = "auto"
    preset: str | None = None
    subnet_config: Path | None = None
    state_dir: Path | None = None
    http_timeout_s: float = 60.0
    chain_timeout_s: float = 30.0
    max_windows: int | None = None
    metrics_host: str = "127.0.0.1"  # Prometheus /metrics (plain HTTP): local by default
    metrics_port: int | None = DEFAULT_METRICS_PORT  # None: no metrics server; 0: a free port
    teacher: Path | None = None  # outputs mode: where this node keeps the subnet's teacher (default: the config's path)


def subnet_config(s: MinerSettings) -> SubnetConfig:
    """The subnet config file if given (its netuid/preset must agree), else defaults."""
    cfg = load_subnet_config(s.subnet_config, s.netuid, s.preset)
    if s.subnet_config is None:
        log.warning("no --subnet-config given: using the default config (hash %s…); if the lead validator "
                    "runs another, the miner stops and says which fields differ (get the subnet's with "
                    "`swarmtrain subnet fetch --netuid %d --out subnet.json`)", cfg.config_hash()[:12], s.netuid)
    return cfg


def state_dir(s: MinerSettings) -> Path:
    if s.state_dir is not None:
        return Path(s.state_dir).expanduser()
    return Path.home() / ".swarmtrain" / "miner" / f"{s.wallet_name}-{s.wallet_hotkey}-netuid{s.netuid}"


def dataset_for(cfg: SubnetConfig) -> Dataset:
    """The subnet's dataset, refusing to start on different tokens."""
    return subnet_dataset(cfg)


def task_parts(cfg: SubnetConfig, s: MinerSettings, miner_cls: type[Miner]) -> tuple[type[Miner], dict[str, Any]]:
    """The miner class and its work part: an inner trainer (gradients) or the teacher (outputs)."""
    if cfg.task == "outputs":
        from miner.teacher import OutputsMiner, build_labeler

        cls = miner_cls if issubclass(miner_cls, OutputsMiner) else OutputsMiner
        return cls, {"labeler": build_labeler(cfg, s.device, s.teacher)}
    trainer = InnerTrainer(subnet_model_config(cfg), lr=cfg.inner_lr, weight_decay=cfg.inner_weight_decay, device=s.device)
    return miner_cls, {"trainer": trainer}


async def launch(s: MinerSettings, miner_cls: type[Miner] = Miner) -> None:
    """Wire chain, wallet, data, trainer, state and HTTP client into a miner and run it."""
    cfg = subnet_config(s)
    wallet = load_wallet(s.wallet_name, s.wallet_hotkey, s.wallet_path)
    dataset = dataset_for(cfg)
    directory = state_dir(s)
    miner_cls, work = task_parts(cfg, s, miner_cls)
    log.info("miner %s on %s netuid %d (task %s), device %s, state %s", s.wallet_name, s.network, cfg.netuid,
             cfg.task, s.device, directory)
    telemetry = MinerTelemetry()
    server = None
    if s.metrics_port is not None:
        server = await MetricsServer.start(telemetry.registry, s.metrics_host, s.metrics_port)
    chain = await Chain.connect(s.network, timeout=s.chain_timeout_s)
    client = CountingClient(SignedClient(wallet, timeout=s.http_timeout_s), telemetry)
    try:
        miner = miner_cls(
            chain=chain, wallet=wallet, cfg=cfg, dataset=dataset, **work,
            store=MinerStateStore(directory), client=client,
            metrics=ObservedMetricsWriter(directory / "metrics.jsonl", telemetry.on_record), options=MinerOptions(),
        )
        await miner.run(max_windows=s.max_windows)
    finally:
        await client.close()
        await chain.close()
        if server is not None:
            await server.stop()
