"""A prepared dataset read shard by shard: the same API as ``TokenDataset``, fetched on demand.

``num_samples`` returns a ``protocol.windows.Population`` whose page is a full shard's
sample count, so ``assigned_samples`` keeps a miner's window within one or two shards;
``batch`` fetches (and verifies) the shards its samples lie in; ``shards_for`` and
``prefetch`` let a miner fetch the next window's shards while it trains on this one.
The identity a subnet pins (``content_hash``) is the sha256 of the manifest's bytes.

Example:
    >>> ds = ShardedDataset.open("https://data.example.org/corpus/", expected_hash=cfg.dataset_hash)
    >>> n = ds.num_samples(seq_len=1024)               # Population(..., page=...)
    >>> ds.prefetch([0, 5, 9], seq_len=1024)           # fetched shard names
    >>> ds.batch([0, 5, 9], seq_len=1024).shape
    torch.Size([3, 1025])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from node.shard_cache import ShardStore
from node.shard_sources import DEFAULT_TIMEOUT_S, ShardSource, open_source, read_all
from protocol.data import DatasetMismatchError, Split, as_indices, cache_root
from protocol.shards import (
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    Manifest,
    ShardEntry,
    SplitLayout,
    manifest_hash,
    parse_manifest,
)
from protocol.tokenizer import TokenizerInfo
from protocol.windows import Population

log = logging.getLogger("swarmtrain.data")

DEFAULT_CACHE_MB = 20 * 1024
CACHE_ENV = "SWARMTRAIN_SHARD_CACHE_MB"


def default_cache_bytes() -> int:
    """``$SWARMTRAIN_SHARD_CACHE_MB`` (MiB) or 20 GiB: the bound on downloaded shards."""
    raw = os.environ.get(CACHE_ENV, "")
    try:
        mb = int(raw) if raw else DEFAULT_CACHE_MB
    except ValueError:
        raise ValueError(f"{CACHE_ENV}={raw!r} is not a whole number of MiB") from None
    if mb < 1:
        raise ValueError(f"{CACHE_ENV} must be at least 1 (MiB), got {mb}")
    return mb << 20


class ShardedDataset:
    """Train and val splits of a manifest's shards, read through a verifying ``ShardStore``."""

    def __init__(self, name: str, manifest: Manifest, content_hash: str, store: ShardStore) -> None:
        self.name = name
        self.manifest = manifest
        self.content_hash = content_hash
        self.store = store
        self._layouts: dict[tuple[str, int], SplitLayout] = {}

    @classmethod
    def open(
        cls, location: str, *, expected_hash: str = "", cache_dir: str | Path | None = None,
        cache_bytes: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
        source: ShardSource | None = None,
    ) -> ShardedDataset:
        """Read and check the manifest at ``location`` (a folder, its manifest.json, or a URL).

        Only the manifest is fetched here; shards come when samples need them.
        ``DatasetMismatchError`` if ``expected_hash`` is set and the manifest's differs.
        """
        source = source or open_source(location, timeout_s)
        data = read_all(source, MANIFEST_FILE, MAX_MANIFEST_BYTES)
        digest = manifest_hash(data)
        where = source.describe(MANIFEST_FILE)
        if expected_hash and digest != expected_hash:
            raise DatasetMismatchError(
                f"the manifest at {where} has hash {digest}, but the subnet pins dataset_hash "
                f"{expected_hash}: the location holds another preparation of the data; point "
                "dataset_name at the subnet's dataset, or update dataset_hash if the subnet moved to this one"
            )
        manifest = parse_manifest(data, where)
        root = Path(cache_dir) if cache_dir is not None else cache_root() / "shards"
        store = ShardStore(source, manifest, cache_dir=root / digest[:16],
                           max_bytes=cache_bytes if cache_bytes is not None else default_cache_bytes())
        return cls(location, manifest, digest, store)

    # -- the TokenDataset API ------------------------------------------------------------
    def num_samples(self, seq_len: int, split: Split = "train") -> Population:
        """Samples of ``seq_len + 1`` tokens the split holds; its page is one full shard's count."""
        return self.layout(split, seq_len).population

    def batch(self, indices: Sequence[int], seq_len: int, split: Split = "train") -> torch.Tensor:
        """Samples ``indices`` as a LongTensor (B, seq_len + 1); fetches missing shards first."""
        layout = self.layout(split, seq_len)
        located = [layout.locate(int(i)) for i in as_indices(indices)]
        entries = layout.entries
        self.store.ensure([entries[k] for k in dict.fromkeys(k for k, _ in located)])
        out = np.empty((len(located), seq_len + 1), dtype=np.int64)
        for row, (k, start) in enumerate(located):
            out[row] = self.store.tokens(entries[k])[start : start + seq_len + 1]
        return torch.from_numpy(out)

    def max_token(self) -> int:
        return self.manifest.max_token_id

    # -- shards ---------------------------------------------------------------------------
    def shards_for(self, indices: Sequence[int], seq_len: int, split: Split = "train") -> list[str]:
        """Files of the shards these samples lie in, in first-use order (local or not)."""
        return [e.file for e in self._entries_for(indices, seq_len, split)]

    def prefetch(self, indices: Sequence[int], seq_len: int, split: Split = "train") -> list[str]:
        """Fetch and verify the shards these samples need; returns the files that were missing."""
        entries = self._entries_for(indices, seq_len, split)
        missing = [e.file for e in entries if not self.store.is_local(e)]
        self.store.ensure(entries)
        return missing

    @property
    def tokenizer(self) -> TokenizerInfo:
        return self.manifest.tokenizer.info()

    def layout(self, split: Split, seq_len: int) -> SplitLayout:
        key = (split, seq_len)
        if key not in self._layouts:
            self._layouts[key] = SplitLayout.build(self.manifest.shards(split), seq_len, self.manifest.shard_tokens)
        return self._layouts[key]

    def _entries_for(self, indices: Sequence[int], seq_len: int, split: Split) -> list[ShardEntry]:
        layout = self.layout(split, seq_len)
        order = dict.fromkeys(layout.locate(int(i))[0] for i in as_indices(indices))
        return [layout.entries[k] for k in order]
