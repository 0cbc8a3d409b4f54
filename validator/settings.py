"""Operator settings of one validator (not shared with the subnet; see ``SubnetConfig``).

Example:
    >>> s = ValidatorSettings(state_dir=Path("/tmp/v"), port=8091)
    >>> s.max_body_bytes > 0
    True
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr


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
    # Evaluation throughput (validator/batched_eval.py): same measurements, batched.
    eval_batched: bool = Field(True, description="batched evaluation (False: one miner at a time)")
    eval_models_per_pass: int = Field(0, ge=0, description="miners per forward pass (0: 16 on CUDA, 1 on CPU)")
    eval_memory_gib: float = Field(0.0, ge=0, description="memory for evaluation passes (0: 2 GiB, a quarter of a GPU)")
    eval_prepare_per_tick: int = Field(8, ge=0, description="submitters whose θ_w losses are taken per tick before the close")
    # Object storage (subnets with storage = "s3", node/storage.py). Credentials come from the
    # environment in the CLI (SWARMTRAIN_S3_*), never from flags.
    s3_endpoint: str | None = Field(None, description="S3 API endpoint URL the validator publishes to")
    s3_bucket: str | None = Field(None, description="bucket it publishes to")
    s3_prefix: str | None = Field(None, description="key prefix in the bucket (default none: one bucket per validator and subnet)")
    s3_region: str | None = Field(None, description="signing region (default us-east-1; R2: auto)")
    s3_write_key_id: str | None = Field(None, description="write key id (None: botocore's credential chain)")
    s3_write_secret: SecretStr | None = Field(None, description="write secret")
    s3_read_key_id: str | None = Field(None, description="read-only key id, published on chain (None: public bucket)")
    s3_read_secret: str | None = Field(None, description="read-only secret, published on chain")
    s3_timeout_s: float = Field(60.0, gt=0, description="one object-store request, at most")
