"""Operator settings of one miner, and the timing knobs of its loop.

The one typed source of ``swarmtrain miner``'s flags, env vars (``SWARMTRAIN_MINER_*``) and
``--config`` TOML keys (``protocol.flags`` generates them from these fields). The loop's
knobs (``MinerOptions``) are what ``Miner`` itself takes; their flags are flat
(``--sync-timeout-s``), their TOML table is ``[options]``.

Example:
    >>> s = MinerSettings(netuid=1, device="cpu", options=MinerOptions(poll_interval_s=0.1))
    >>> s.state_path.name, s.options.sync_timeout_s
    ('default-default-netuid1', 600.0)
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from node.settings import NodeSettings

DEFAULT_METRICS_PORT = 9101  # Prometheus /metrics of a miner (plain HTTP, local by default)
DIST_TIMEOUT_S = 6 * 3600.0  # other ranks wait on rank 0 for as long as it waits for the chain


class MinerOptions(BaseModel):
    """Timing knobs (seconds) of the miner loop."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sync_timeout_s: float = Field(600.0, gt=0, description="seconds to wait for a validator or an aggregate")
    poll_interval_s: float = Field(0.25, gt=0, description="chain polling period, seconds")
    submit_deadline_s: float = Field(60.0, gt=0, description="retries of one submission stop after this, seconds")
    log_every_steps: int = Field(5, ge=1, description="log the training loss every this many inner steps")
    max_consecutive_failures: int = Field(
        10, ge=1, description="transient chain/HTTP errors in a row before the miner gives up"
    )


class MemoryOptions(BaseModel):
    """How the inner loop uses device memory and devices (``miner.memory_plan`` resolves "auto";
    ``swarmtrain miner --plan`` prints the result). The update is the same whatever is chosen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 autocast (weights and AdamW stay fp32); auto: bf16 on CUDA")
    checkpointing: Literal["auto", "on", "off"] = Field(
        "auto", description="activation checkpointing per block; auto: only when the batch does not fit without")
    micro_batch: int = Field(0, ge=0, description="samples per forward/backward, gradients accumulated (0: auto)")
    gpus: int = Field(1, ge=1, description="train on N GPUs of this machine (N ranks under torchrun; rank 0 mines)")
    shard: bool = Field(False, description="with several GPUs: FSDP2, model and AdamW state split over them (default DDP)")
    dist_timeout_s: float = Field(DIST_TIMEOUT_S, gt=0, description="seconds the other ranks wait for rank 0")


class MinerSettings(NodeSettings):
    """What an operator chooses; everything else comes from the subnet config."""

    ROLE: ClassVar[str] = "miner"

    device: str = Field("auto", description="cuda, cuda:N, mps, cpu or auto")
    preset: str | None = Field(None, description="model preset (must match the subnet config)")
    http_timeout_s: float = Field(60.0, gt=0, description="seconds allowed per request to a validator")
    metrics: bool = Field(True, description="serve Prometheus /metrics over plain HTTP (--no-metrics: none)")
    metrics_host: str = Field("127.0.0.1", description="address the metrics server binds; 127.0.0.1 is this machine only")
    metrics_port: int = Field(DEFAULT_METRICS_PORT, ge=0, le=65535, description="metrics port (0 picks a free one)")
    options: MinerOptions = Field(MinerOptions(), json_schema_extra={"prefix": "", "group": "miner loop"})
    memory: MemoryOptions = Field(MemoryOptions(), json_schema_extra={"prefix": "", "group": "memory and devices"})
