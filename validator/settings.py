"""Operator settings of one validator (not shared with the subnet; see ``SubnetConfig``).

The one typed source of ``swarmtrain validator``'s flags, env vars (``SWARMTRAIN_VALIDATOR_*``)
and ``--config`` TOML keys (``protocol.flags`` generates them from these fields).

Example:
    >>> s = ValidatorSettings(netuid=1, state_dir=Path("/tmp/v"), port=8091)
    >>> s.max_body_bytes > 0, s.state_path == Path("/tmp/v")
    (True, True)
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from node.settings import NodeSettings
from protocol.flags import ENV_ONLY


class ValidatorSettings(NodeSettings):
    """Where the validator listens, keeps state, and how much work it accepts."""

    ROLE: ClassVar[str] = "validator"

    host: str = Field("127.0.0.1", description="address the HTTPS server binds")
    port: int = Field(8091, ge=0, le=65535, description="HTTPS port (0: pick a free one)")
    external_ip: str | None = Field(None, description="ip published on chain (default: --host)")
    device: str = Field("cpu", description="torch device for evaluation (cpu, cuda, cuda:N, mps)")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="largest accepted POST body, bytes")
    max_concurrent_requests: int = Field(16, ge=1, description="submissions verified at once")
    request_timeout_s: float = Field(30.0, gt=0, description="seconds allowed to read one request body")
    min_body_rate: int = Field(
        64 * 1024, ge=1, description="bytes/s a submission body must average after body_grace_s, else it is cut off"
    )
    body_grace_s: float = Field(2.0, ge=0, description="seconds before min_body_rate applies to a body")
    max_connections: int = Field(
        1024, ge=1, description="open HTTPS connections at most (at the cap the oldest idle one is closed)"
    )
    keepalive_timeout_s: float = Field(15.0, gt=0, description="seconds an idle connection is kept open")
    max_submissions_per_window: int = Field(1024, ge=1, description="submissions stored per window, at most")
    lead_timeout_s: float = Field(30.0, gt=0, description="seconds allowed per request to the lead validator")
    poll_interval_s: float = Field(1.0, gt=0, description="chain block polling period, seconds")
    keep_checkpoints: int = Field(3, ge=1, description="model checkpoints kept on disk")
    val_batches: int = Field(2, ge=1, description="batches of eval_samples in the fixed validation set")
    nonce_retention_s: float = Field(120.0, gt=0, description="seconds a request nonce is remembered (replays)")
    peer_status_interval_s: float = Field(
        10.0, gt=0, description="seconds between reads of other validators' /status (the dashboard's peers)"
    )
    peer_status_timeout_s: float = Field(5.0, gt=0, description="seconds allowed to read one other validator's /status")
    # Evaluation throughput (validator/batched_eval.py): the same measurements, batched.
    eval_batched: bool = Field(True, description="batched evaluation (--no-eval-batched: one miner at a time)")
    eval_models_per_pass: int = Field(0, ge=0, description="miners per forward pass (0: 16 on CUDA, 1 on CPU)")
    eval_memory_gib: float = Field(0.0, ge=0, description="memory for evaluation passes, GiB (0: 2 GiB)")
    eval_prepare_s: float = Field(
        2.0, ge=0, description="seconds per tick spent measuring arrived submissions before the window "
                               "closes (0: all at the close)")
    # Object storage (subnets with storage = "s3", node/storage.py). The write keys are read from
    # the environment or --config only (ENV_ONLY), never from flags, which other users can see.
    s3_endpoint: str | None = Field(None, description="S3 API endpoint URL the validator publishes to (AWS S3, R2, MinIO)")
    s3_bucket: str | None = Field(None, description="bucket it publishes to")
    s3_prefix: str | None = Field(None, description="key prefix in the bucket (default none: a bucket per validator and subnet)")
    s3_region: str | None = Field(None, description="signing region (default us-east-1; R2: auto)")
    s3_write_key_id: str | None = Field(None, description="write key id (default: the usual AWS variables)",
                                        json_schema_extra=ENV_ONLY)
    s3_write_secret: SecretStr | None = Field(None, description="write secret", json_schema_extra=ENV_ONLY)
    s3_read_key_id: str | None = Field(
        None, description="read-only key id, published on chain (default none: the bucket must be publicly readable)")
    s3_read_secret: str | None = Field(None, description="read-only secret, published on chain")
    s3_timeout_s: float = Field(60.0, gt=0, description="seconds allowed per object-store request")
