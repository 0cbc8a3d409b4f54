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

from chain.client import Chain
from chain.wallets import load_wallet
from miner.service import Miner, MinerOptions
from miner.state import MinerStateStore
from miner.trainer import InnerTrainer
from node.logs import MetricsWriter
from node.signed_http import SignedClient
from node.subnet_setup import load_subnet_config, subnet_dataset
from protocol.model import subnet_model_config

log = logging.getLogger("swarmtrain.miner")


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


def state_dir(s: MinerSettings) -> Path:
    if s.state_dir is not None:
        return Path(s.state_dir).expanduser()
    return Path.home() / ".swarmtrain" / "miner" / f"{s.wallet_name}-{s.wallet_hotkey}-netuid{s.netuid}"


async def launch(s: MinerSettings, miner_cls: type[Miner] = Miner) -> None:
    """Wire chain, wallet, data, trainer, state and HTTP client into a miner and run it."""
    cfg = load_subnet_config(s.subnet_config, s.netuid, s.preset)
    wallet = load_wallet(s.wallet_name, s.wallet_hotkey, s.wallet_path)
    dataset = subnet_dataset(cfg)
    directory = state_dir(s)
    trainer = InnerTrainer(subnet_model_config(cfg), lr=cfg.inner_lr, weight_decay=cfg.inner_weight_decay, device=s.device)
    log.info("miner %s on %s netuid %d, device %s, state %s", s.wallet_name, s.network, cfg.netuid,
             trainer.device, directory)
    chain = await Chain.connect(s.network, timeout=s.chain_timeout_s)
    client = SignedClient(wallet, timeout=s.http_timeout_s)
    try:
        miner = miner_cls(
            chain=chain, wallet=wallet, cfg=cfg, dataset=dataset, trainer=trainer,
            store=MinerStateStore(directory), client=client,
            metrics=MetricsWriter(directory / "metrics.jsonl"), options=MinerOptions(),
        )
        await miner.run(max_windows=s.max_windows)
    finally:
        await client.close()
        await chain.close()
