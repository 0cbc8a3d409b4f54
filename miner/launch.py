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

import torch.distributed

from chain.client import Chain
from chain.wallets import load_wallet
from miner.distributed import DistEnv, DistributedTrainer, dist_env, init_distributed
from miner.memory_plan import MemoryPlan, MemorySettings, choose, device_memory
from miner.service import Miner
from miner.settings import MinerSettings
from miner.state import MinerStateStore
from miner.trainer import InnerTrainer, resolve_device
from node.logs import progress_line
from node.metrics import CountingClient, MetricsServer, MinerTelemetry, ObservedMetricsWriter
from node.signed_http import SignedClient
from node.subnet_setup import load_subnet_config, subnet_dataset
from protocol.model import subnet_model_config
from protocol.subnet import SubnetConfig

log = logging.getLogger("swarmtrain.miner")


def memory_plan(s: MinerSettings, cfg: SubnetConfig, device_type: str, device_bytes: int,
                ranks: int = 1) -> tuple[MemoryPlan, list[MemoryPlan]]:
    """The memory settings resolved for this subnet's batch on this device."""
    m = s.memory
    settings = MemorySettings(precision=m.precision, checkpointing=m.checkpointing, micro_batch=m.micro_batch)
    return choose(subnet_model_config(cfg), settings, batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                  device_type=device_type, device_bytes=device_bytes, ranks=ranks, shard=m.shard)


def build_trainer(s: MinerSettings, cfg: SubnetConfig) -> tuple[InnerTrainer, DistEnv | None]:
    """This process's trainer: single device, or one rank of a torchrun job."""
    env = dist_env()
    device = init_distributed(env, s.device, s.memory.dist_timeout_s) if env is not None else resolve_device(s.device)
    chosen, _ = memory_plan(s, cfg, device.type, device_memory(device)[0], env.world_size if env else 1)
    if device.type == "cuda" and not chosen.fits:
        log.warning(progress_line("the memory plan does not fit the device", need_gib=round(chosen.total / 2**30, 1),
                                  device_gib=round(chosen.device_bytes / 2**30, 1), fix="swarmtrain miner --plan"))
    model_cfg = subnet_model_config(cfg)
    if env is None:
        return InnerTrainer(model_cfg, lr=cfg.inner_lr, weight_decay=cfg.inner_weight_decay, device=device,
                            precision=chosen.precision, checkpointing=chosen.checkpointing,
                            micro_batch=chosen.micro_batch), None
    return DistributedTrainer(model_cfg, env=env, shard=s.memory.shard, lr=cfg.inner_lr,
                              weight_decay=cfg.inner_weight_decay, device=device, precision=chosen.precision,
                              checkpointing=chosen.checkpointing, micro_batch=chosen.micro_batch), env


def subnet_config(s: MinerSettings) -> SubnetConfig:
    """The subnet config file if given (its netuid/preset must agree), else defaults."""
    cfg = load_subnet_config(s.subnet_config, s.netuid, s.preset)
    if s.subnet_config is None:
        log.warning(progress_line(
            "no --subnet-config given: using the default config; if the lead validator runs another, the miner "
            "stops and says which fields differ", config_hash=cfg.config_hash()[:12],
            fix=f"swarmtrain subnet fetch --netuid {s.netuid} --out subnet.json"))
    return cfg


async def launch(s: MinerSettings, miner_cls: type[Miner] = Miner) -> None:
    """Wire chain, wallet, data, trainer (or teacher), state and HTTP client into a miner and run it.
    Under torchrun, ranks > 0 only train (rank 0's commands) and rank 0 is the miner."""
    cfg = subnet_config(s)
    if cfg.task == "outputs":  # the teacher labels: no inner trainer, one process
        from miner.teacher import OutputsMiner, build_labeler

        cls = miner_cls if issubclass(miner_cls, OutputsMiner) else OutputsMiner
        await run_miner(s, cfg, cls, {"labeler": build_labeler(cfg, s.device, s.teacher)}, {"device": s.device})
        return
    trainer, env = build_trainer(s, cfg)
    if env is not None and env.rank != 0:
        try:
            trainer.serve()  # type: ignore[attr-defined]
        finally:
            torch.distributed.destroy_process_group()
        return
    try:
        await run_miner(s, cfg, miner_cls, {"trainer": trainer}, trainer_fields(trainer))
    finally:
        if env is not None:
            trainer.shutdown()  # type: ignore[attr-defined]
            torch.distributed.destroy_process_group()


def trainer_fields(trainer: InnerTrainer) -> dict[str, object]:
    """What the start-up log line says of the trainer."""
    return {"device": trainer.device, "precision": trainer.precision,
            "checkpointing": "on" if trainer.checkpointing else "off", "micro_batch": trainer.micro_batch}


async def run_miner(s: MinerSettings, cfg: SubnetConfig, miner_cls: type[Miner], work: dict[str, Any],
                    fields: dict[str, object]) -> None:
    """Rank 0 (or the only process): chain, wallet, data, state, metrics and HTTP around the window's
    work (``work``: the inner ``trainer``, or the teacher's ``labeler`` in outputs mode)."""
    wallet = load_wallet(s.wallet.name, s.wallet.hotkey, s.wallet.path)
    dataset = subnet_dataset(cfg)
    directory = s.state_path
    log.info(progress_line("miner", wallet=s.wallet.name, network=s.subtensor.endpoint, netuid=cfg.netuid,
                           task=cfg.task, **fields, state=directory))
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
