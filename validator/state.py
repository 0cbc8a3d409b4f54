"""The validator's state directory: model, scores, checkpoints, aggregates, secret, metrics.

Layout (documented in docs/validator.md)::

    <state>/tls/cert.pem, key.pem     self-signed identity (fingerprint committed on chain)
    <state>/secret.key                32 random bytes: entropy for random evaluation data
    <state>/model.safetensors         θ_w (ModelState) after the last closed window
    <state>/scores.json               moving-average MinerScores
    <state>/checkpoints/              full checkpoints θ_w every K windows (+ manifests)
    <state>/aggregates/               published Aggregate(w) envelopes
    <state>/metrics.jsonl             one line per closed window
    <state>/subnet.json               the subnet config this state belongs to

Example:
    >>> st = ValidatorState.open(settings, cfg)
    >>> st.model.window, st.scores.last_window
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from node.checkpoints import CheckpointStore
from node.logs import MetricsWriter
from node.model_state import ModelState
from node.tls import TlsIdentity, ensure_identity
from protocol import criteria
from protocol.files import atomic_write
from protocol.messages import CheckpointManifest
from protocol.model import subnet_model_config
from protocol.subnet import SubnetConfig
from validator.scores import ScoreBook
from validator.settings import ValidatorSettings

MODEL_FILE = "model.safetensors"
SECRET_FILE = "secret.key"
SUBNET_FILE = "subnet.json"


class StateDirError(RuntimeError):
    """The state directory belongs to another subnet config or is damaged."""


def load_secret(path: Path) -> bytes:
    """The validator's secret (created once, mode 0600)."""
    if not path.exists():
        atomic_write(path, secrets.token_bytes(32), mode=0o600)
    data = path.read_bytes()
    if len(data) != 32:
        raise StateDirError(f"{path} must hold 32 bytes")
    return data


def _check_subnet(path: Path, cfg: SubnetConfig) -> None:
    if path.exists():
        saved = SubnetConfig.load(path)
        if saved.config_hash() != cfg.config_hash():
            raise StateDirError(
                f"state directory {path.parent} belongs to another subnet config "
                f"({saved.config_hash()[:12]}… != {cfg.config_hash()[:12]}…); use another --state"
            )
    else:
        atomic_write(path, cfg.model_dump_json(indent=2).encode())


@dataclass
class ValidatorState:
    """Everything the validator keeps on disk, loaded."""

    root: Path
    cfg: SubnetConfig
    identity: TlsIdentity
    secret: bytes
    model: ModelState
    scores: ScoreBook
    store: CheckpointStore
    metrics: MetricsWriter

    @classmethod
    def open(cls, settings: ValidatorSettings, cfg: SubnetConfig,
             params: criteria.CriteriaParams = criteria.DEFAULT_PARAMS) -> ValidatorState:
        root = settings.state_path
        root.mkdir(parents=True, exist_ok=True)
        _check_subnet(root / SUBNET_FILE, cfg)
        model_path = root / MODEL_FILE
        model = ModelState.load(model_path, cfg) if model_path.exists() else ModelState.initial(cfg)
        state = cls(
            root=root,
            cfg=cfg,
            identity=ensure_identity(root / "tls"),
            secret=load_secret(root / SECRET_FILE),
            model=model,
            scores=ScoreBook(root / "scores.json", params),
            store=CheckpointStore(root, keep_checkpoints=settings.keep_checkpoints),
            metrics=MetricsWriter(root / "metrics.jsonl"),
        )
        if state.store.latest_checkpoint() is None:
            state.checkpoint()  # so a node joining later always finds a starting point
        return state

    def save_model(self) -> None:
        self.model.save(self.root / MODEL_FILE)

    def checkpoint(self) -> CheckpointManifest:
        """Store a full checkpoint of θ_window with its manifest."""
        data = self.model.to_bytes()
        manifest = CheckpointManifest(
            netuid=self.cfg.netuid,
            window=self.model.window,
            model_hash=self.model.hash(),
            config=subnet_model_config(self.cfg).model_dump(),
            subnet_config_hash=self.cfg.config_hash(),
            file_sha256=hashlib.sha256(data).hexdigest(),
            file_size=len(data),
            created_at=time.time(),
        )
        self.store.put_checkpoint(self.model.window, data, manifest.model_dump())
        return manifest
