"""On-disk store of full checkpoints and per-window aggregates; crash-safe, bounded.

Layout under ``root``::

    checkpoints/00000005.safetensors   full model state θ_5 (written first)
    checkpoints/00000005.json          its manifest (written last: the commit marker)
    aggregates/00000004.bin            the published Aggregate(4) envelope bytes

Every file is written with ``protocol.files.atomic_write`` (temp name, fsync, rename,
directory fsync), so a crash mid-write leaves the previous file intact. A checkpoint counts
only once its manifest exists and names the data file's exact size.

Example:
    >>> store = CheckpointStore(Path("/tmp/state"), keep_checkpoints=3)
    >>> store.put_aggregate(4, b"...")
    >>> store.get_aggregate(4)
    b'...'
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from protocol.files import atomic_write, atomic_write_json

CKPT_DIR = "checkpoints"
AGG_DIR = "aggregates"


def _name(window: int, suffix: str) -> str:
    return f"{window:08d}{suffix}"


def _windows_in(directory: Path, suffix: str) -> list[int]:
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        stem = p.name[: -len(suffix)] if p.name.endswith(suffix) else ""
        if stem.isdigit():
            found.append(int(stem))
    return sorted(found)


class CheckpointStore:
    """Checkpoints (keep the newest ``keep_checkpoints``) and aggregates (newest ``keep_aggregates``)."""

    def __init__(self, root: Path, *, keep_checkpoints: int = 3, keep_aggregates: int = 500) -> None:
        if keep_checkpoints < 1 or keep_aggregates < 1:
            raise ValueError("retention must keep at least one item")
        self.root = Path(root)
        self.keep_checkpoints = keep_checkpoints
        self.keep_aggregates = keep_aggregates
        (self.root / CKPT_DIR).mkdir(parents=True, exist_ok=True)
        (self.root / AGG_DIR).mkdir(parents=True, exist_ok=True)

    # -- checkpoints -------------------------------------------------------------------
    def checkpoint_path(self, window: int) -> Path:
        return self.root / CKPT_DIR / _name(window, ".safetensors")

    def manifest_path(self, window: int) -> Path:
        return self.root / CKPT_DIR / _name(window, ".json")

    def put_checkpoint(self, window: int, data: bytes, manifest: dict[str, Any]) -> dict[str, Any]:
        """Store checkpoint bytes for θ_window; returns the manifest written (with size, sha256)."""
        full = {**manifest, "window": window, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        atomic_write(self.checkpoint_path(window), data)
        atomic_write_json(self.manifest_path(window), full)
        self._prune(CKPT_DIR, ".json", self.keep_checkpoints, (".json", ".safetensors"))
        return full

    def get_manifest(self, window: int) -> dict[str, Any] | None:
        """The manifest of a complete checkpoint, or None (missing, torn or size mismatch)."""
        try:
            manifest = json.loads(self.manifest_path(window).read_text(encoding="utf-8"))
            size = self.checkpoint_path(window).stat().st_size
        except (OSError, ValueError):
            return None
        return manifest if manifest.get("size") == size else None

    def checkpoint_windows(self) -> list[int]:
        return [w for w in _windows_in(self.root / CKPT_DIR, ".json") if self.get_manifest(w)]

    def latest_checkpoint(self) -> int | None:
        windows = self.checkpoint_windows()
        return windows[-1] if windows else None

    def read_checkpoint(self, window: int) -> bytes | None:
        """A complete checkpoint's bytes (what the object-store mirror uploads), or None."""
        if self.get_manifest(window) is None:
            return None
        return self.checkpoint_path(window).read_bytes()

    # -- aggregates --------------------------------------------------------------------
    def aggregate_path(self, window: int) -> Path:
        return self.root / AGG_DIR / _name(window, ".bin")

    def put_aggregate(self, window: int, data: bytes) -> None:
        atomic_write(self.aggregate_path(window), data)
        self._prune(AGG_DIR, ".bin", self.keep_aggregates, (".bin",))

    def get_aggregate(self, window: int) -> bytes | None:
        try:
            return self.aggregate_path(window).read_bytes()
        except FileNotFoundError:
            return None

    def aggregate_windows(self) -> list[int]:
        """Windows whose aggregate is stored (the mirror's resync after a restart)."""
        return _windows_in(self.root / AGG_DIR, ".bin")

    # -- retention ---------------------------------------------------------------------
    def _prune(self, sub: str, key_suffix: str, keep: int, suffixes: tuple[str, ...]) -> None:
        windows = _windows_in(self.root / sub, key_suffix)
        for window in windows[:-keep]:
            for suffix in suffixes:
                (self.root / sub / _name(window, suffix)).unlink(missing_ok=True)
