"""Operator settings of one validator (not shared with the subnet; see ``SubnetConfig``).

Example:
    >>> s = ValidatorSettings(state_dir=Path("/tmp/v"), port=8091)
    >>> s.max_body_bytes > 0
    True
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ValidatorSettings(BaseModel):
    """Where the validator listens, keeps state, and how much work it accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state_dir: Path = Field(description="state directory (see docs/validator.md)")
    host: str = Field("127.0.0.1", description="address the HTTPS server binds")
    port: int = Field(8091, ge=0, le=65535, description="HTTPS port (0: pick a free one)")
    external_ip: str | None = Field(None, description="ip published on chain; default: host")
    device: str = Field("cpu", description="torch device for evaluation")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="largest accepted POST body")
    max_concurrent_requests: int = Field(16, ge=1, description="submissions verified at once")
    request_timeout_s: float = Field(30.0, gt=0, description="reading one request body, at most")
    max_submissions_per_window: int = Field(1024, ge=1)
    poll_interval_s: float = Field(1.0, gt=0, description="chain block polling period")
    chain_timeout_s: float = Field(30.0, gt=0, description="one chain call, at most")
    keep_checkpoints: int = Field(3, ge=1)
    val_batches: int = Field(2, ge=1, description="batches of eval_samples in the fixed validation set")
    nonce_retention_s: float = Field(120.0, gt=0)
    peer_status_interval_s: float = Field(10.0, gt=0, description="the dashboard reads other validators' /status at most this often")
    peer_status_timeout_s: float = Field(5.0, gt=0, description="reading one other validator's /status, at most")
    teacher: Path | None = Field(None, description="outputs mode: this node's copy of the subnet's teacher (default: the config's path)")
