"""The miner's local state, checkpointed atomically after every window.

A checkpoint is a directory ``ckpt-<window>`` holding the network model θ_w
(``model.safetensors``, written by ``node.model_state.ModelState``), the inner
AdamW state and the error-feedback buffer (``local.safetensors``: tensors, with the
non-tensor structure as JSON in the metadata) and ``meta.json``. Each file is written with
``protocol.files.atomic_write`` into a directory with a temporary name, which is fsynced
and renamed; ``LATEST`` (replaced atomically) names the newest complete one, so a crash at
any point leaves the previous checkpoint loadable.
No pickle, no torch.load.

Example:
    >>> store = MinerStateStore(Path("~/.swarmtrain/miner").expanduser())
    >>> store.save(MinerState(model=model_state, inner_optimizer=opt_sd, error_feedback=ef_sd))
    >>> state = store.load(subnet_cfg)                       # None when there is none yet
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from safetensors.torch import save as safetensors_save

from node.model_state import ModelState
from node.tensor_tree import TensorTreeError, flatten, unflatten
from protocol.files import atomic_write, fsync_dir
from protocol.subnet import SubnetConfig

LATEST = "LATEST"
MODEL_FILE = "model.safetensors"
LOCAL_FILE = "local.safetensors"
META_FILE = "meta.json"
STATE_VERSION = 1


class MinerStateError(RuntimeError):
    """A miner checkpoint is missing pieces, corrupt, or for another subnet config."""


@dataclass
class MinerState:
    """Everything a miner needs to resume: θ_w (+ its window), inner optimizer, error feedback."""

    model: ModelState
    inner_optimizer: dict[str, Any] = field(default_factory=dict)
    error_feedback: dict[str, Any] = field(default_factory=dict)

    @property
    def window(self) -> int:
        return int(self.model.window)


class MinerStateStore:
    """Directory of miner checkpoints; keeps the newest ``keep`` of them.

    Example:
        >>> store = MinerStateStore(tmp_path, keep=2)
        >>> store.save(state); store.load(cfg).window == state.window
    """

    def __init__(self, root: Path, *, keep: int = 2) -> None:
        self.root = Path(root)
        self.keep = max(1, keep)

    def _dir(self, window: int) -> Path:
        return self.root / f"ckpt-{window:010d}"

    def save(self, state: MinerState) -> Path:
        """Write ``state`` atomically; returns the checkpoint directory."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self._dir(state.window)
        tmp = self.root / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            self._write_parts(tmp, state)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(self.root)
        self._write_latest(final.name)
        self._prune()
        return final

    def _write_parts(self, directory: Path, state: MinerState) -> None:
        state.model.save(directory / MODEL_FILE)
        tensors, skeleton = flatten(
            {"inner_optimizer": state.inner_optimizer, "error_feedback": state.error_feedback}
        )
        atomic_write(directory / LOCAL_FILE, safetensors_save(tensors, metadata={"skeleton": json.dumps(skeleton)}))
        meta = {
            "version": STATE_VERSION,
            "window": state.window,
            "model_hash": state.model.hash(),
            "subnet_config_hash": state.model.cfg.config_hash(),
        }
        atomic_write(directory / META_FILE, json.dumps(meta, indent=2).encode("utf-8"))

    def _write_latest(self, name: str) -> None:
        atomic_write(self.root / LATEST, name.encode("utf-8"))

    def _prune(self) -> None:
        dirs = sorted(p for p in self.root.glob("ckpt-*") if p.is_dir())
        for old in dirs[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)

    def latest_dir(self) -> Path | None:
        pointer = self.root / LATEST
        if not pointer.exists():
            return None
        directory = self.root / pointer.read_text(encoding="utf-8").strip()
        return directory if directory.is_dir() else None

    def load(self, cfg: SubnetConfig) -> MinerState | None:
        """The newest checkpoint for ``cfg``, or None if there is none.

        Raises ``MinerStateError`` when it belongs to another subnet config or is damaged.
        """
        directory = self.latest_dir()
        if directory is None:
            return None
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
        if meta.get("subnet_config_hash") != cfg.config_hash():
            raise MinerStateError(
                f"miner state in {directory} is for subnet config {meta.get('subnet_config_hash')}, "
                f"not {cfg.config_hash()}: use another --state directory or delete it"
            )
        model = ModelState.load(directory / MODEL_FILE, cfg)
        if model.hash() != meta["model_hash"]:
            raise MinerStateError(f"model in {directory} does not match its recorded hash")
        local = self._read_local(directory / LOCAL_FILE)
        return MinerState(model=model, inner_optimizer=local["inner_optimizer"], error_feedback=local["error_feedback"])

    @staticmethod
    def _read_local(path: Path) -> dict[str, Any]:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
        if "skeleton" not in metadata:
            raise MinerStateError(f"{path} has no state skeleton")
        tensors = load_file(str(path))
        try:
            return unflatten(json.loads(metadata["skeleton"]), tensors)
        except TensorTreeError as exc:
            raise MinerStateError(f"{path}: {exc}") from exc
