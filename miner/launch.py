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

import torch.distributed

from chain.client import Chain
from chain.wallets import load_wallet
from miner.distributed import (
    DEFAULT_TIMEOUT_S,
    DistEnv,
    DistributedTrainer,
    dist_env,
    init_distributed,
)
from miner.memory_plan import MemoryPlan, MemorySettings, choose, device_memory
from miner.service import Miner, MinerOptions
from miner.state import MinerStateStore
from miner.trainer import InnerTrainer, resolve_device
from node.logs import MetricsWriter
from node.signed_http import SignedClient
from node.subnet_setup import load_subnet_config, subnet_dataset
from protocol.data import Dataset
from protocol.model import subnet_model_config
from protocol.subnet import SubnetConfig

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
    # memory (miner.memory_plan; "auto" resolved from the device's memory) and several devices
    precision: str = "auto"  # auto | fp32 | bf16 (autocast; weights and AdamW stay fp32)
    checkpointing: str = "auto"  # auto | on | off: activation checkpointing per block
    micro_batch: int = 0  # samples per forward/backward (gradient accumulation); 0: auto
    shard: bool = False  # under torchrun: FSDP2 (sharded model and optimizer) instead of DDP
    dist_timeout_s: float = DEFAULT_TIMEOUT_S


def memory_plan(s: MinerSettings, cfg: SubnetConfig, device_type: str, device_bytes: int,
                ranks: int = 1) -> tuple[MemoryPlan, list[MemoryPlan]]:
    """The memory settings resolved for this subnet's batch on this device."""
    settings = MemorySettings(precision=s.precision, checkpointing=s.checkpointing,  # type: ignore[arg-type]
                              micro_batch=s.micro_batch)
    return choose(subnet_model_config(cfg), settings, batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                  device_type=device_type, device_bytes=device_bytes, ranks=ranks, shard=s.shard)


def build_trainer(s: MinerSettings, cfg: SubnetConfig) -> tuple[InnerTrainer, DistEnv | None]:
    """This process's trainer: single device, or one rank of a torchrun job."""
    env = dist_env()
    device = init_distributed(env, s.device, s.dist_timeout_s) if env is not None else resolve_device(s.device)
    chosen, _ = memory_plan(s, cfg, device.type, device_memory(device)[0], env.world_size if env else 1)
    if device.type == "cuda" and not chosen.fits:
        log.warning("the memory plan needs %.1f GiB, the device has %.1f GiB (see swarmtrain miner --plan)",
                    chosen.total / 2**30, chosen.device_bytes / 2**30)
    kwargs = dict(lr=cfg.inner_lr, weight_decay=cfg.inner_weight_decay, device=device, precision=chosen.precision,
                  checkpointing=chosen.checkpointing, micro_batch=chosen.micro_batch)
    model_cfg = subnet_model_config(cfg)
    if env is None:
        return InnerTrainer(model_cfg, **kwargs), None  # type: ignore[arg-type]
    return DistributedTrainer(model_cfg, env=env, shard=s.shard, **kwargs), env  # type: ignore[arg-type]


def subnet_config(s: MinerSettings) -> SubnetConfig:
    """The subnet config file if given (its netuid/preset must agree), else defaults."""
    return load_subnet_config(s.subnet_config, s.netuid, s.preset)


def state_dir(s: MinerSettings) -> Path:
    if s.state_dir is not None:
        return Path(s.state_dir).expanduser()
    return Path.home() / ".swarmtrain" / "miner" / f"{s.wallet_name}-{s.wallet_hotkey}-netuid{s.netuid}"


def dataset_for(cfg: SubnetConfig) -> Dataset:
    """The subnet's dataset, refusing to start on different tokens."""
    return subnet_dataset(cfg)


async def launch(s: MinerSettings, miner_cls: type[Miner] = Miner) -> None:
    """Wire chain, wallet, data, trainer, state and HTTP client into a miner and run it.
    Under torchrun, ranks > 0 only train (rank 0's commands) and rank 0 is the miner."""
    cfg = subnet_config(s)
    trainer, env = build_trainer(s, cfg)
    if env is not None and env.rank != 0:
        try:
            trainer.serve()  # type: ignore[attr-defined]
        finally:
            torch.distributed.destroy_process_group()
        return
    try:
        await run_miner(s, cfg, trainer, miner_cls)
    finally:
        if env is not None:
            trainer.shutdown()  # type: ignore[attr-defined]
            torch.distributed.destroy_process_group()


async def run_miner(s: MinerSettings, cfg: SubnetConfig, trainer: InnerTrainer, miner_cls: type[Miner]) -> None:
    wallet = load_wallet(s.wallet_name, s.wallet_hotkey, s.wallet_path)
    dataset = dataset_for(cfg)
    directory = state_dir(s)
    log.info("miner %s on %s netuid %d, device %s (%s, checkpointing %s, micro-batch %s), state %s",
             s.wallet_name, s.network, cfg.netuid, trainer.device, trainer.precision,
             "on" if trainer.checkpointing else "off", trainer.micro_batch, directory)
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
