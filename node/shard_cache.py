"""Verified shards on local disk: fetched on demand, checked against the manifest, size-bounded.

A shard is usable only after its size, header and sha256 match its manifest entry
(checked once per process). Shards of a local source are used in place; downloaded
ones live in ``cache_dir`` and are evicted least-recently-used first when their total
exceeds ``max_bytes`` (never the shards of the last two requests: a miner's current
window and the next one it prefetches meanwhile). A download is
written to a temporary file and renamed only once verified, so a crash never leaves a
half shard under its real name.

Example:
    >>> store = ShardStore(source, manifest, cache_dir=Path("cache"), max_bytes=10 << 30)
    >>> store.ensure(manifest.train[:2])          # fetch + verify two shards
    >>> store.tokens(manifest.train[0])[:5]       # memory-mapped token ids
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import IO

import numpy as np

from node.logs import progress_line
from node.shard_sources import ShardSource
from protocol.files import atomic_file
from protocol.shards import (
    HEADER_SIZE,
    Manifest,
    ShardEntry,
    ShardError,
    check_shard_size,
    decode_header,
)

log = logging.getLogger("swarmtrain.data")

_CHUNK = 1 << 20


class _HashingWriter:
    """File writer that hashes what passes through (one read of the network stream)."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.h = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.h.update(data)
        return self.f.write(data)


class ShardStore:
    """Local, verified, memory-mapped shards of one manifest."""

    def __init__(self, source: ShardSource, manifest: Manifest, *, cache_dir: Path, max_bytes: int) -> None:
        self.source = source
        self.manifest = manifest
        self.cache_dir = Path(cache_dir)
        self.max_bytes = max_bytes
        self.dtype = np.dtype("<u2" if manifest.dtype == "uint16" else "<u4")
        self.downloaded: list[str] = []  # file names this process fetched, in order
        self._maps: dict[str, np.ndarray] = {}
        self._cached: OrderedDict[str, int] = self._scan_cache()  # downloaded file -> size, LRU first
        self._lock = threading.Lock()
        self._file_locks: dict[str, threading.Lock] = {}
        self._recent: collections.deque[frozenset[str]] = collections.deque(maxlen=2)  # kept from eviction

    # -- public ------------------------------------------------------------------------
    def ensure(self, entries: Sequence[ShardEntry]) -> None:
        """Make every shard of ``entries`` local and verified; they stay until two later requests."""
        names = frozenset(e.file for e in entries)
        with self._lock:
            self._recent.append(names)
            pinned = set().union(*self._recent)
        for entry in entries:
            self._open(entry)
        self._touch(names)
        self._evict(pinned)

    def tokens(self, entry: ShardEntry) -> np.ndarray:
        """The shard's token ids (memory-mapped), fetching and verifying it first if needed."""
        array = self._maps.get(entry.file)
        if array is None:
            self.ensure([entry])
            array = self._maps[entry.file]
        return array

    def is_local(self, entry: ShardEntry) -> bool:
        return entry.file in self._maps

    def cached_bytes(self) -> int:
        with self._lock:
            return sum(self._cached.values())

    # -- fetching and checking -----------------------------------------------------------
    def _open(self, entry: ShardEntry) -> None:
        with self._file_lock(entry.file):
            if entry.file in self._maps:
                return
            in_place = self.source.local_path(entry.file)
            path = in_place if in_place is not None else self._cache_copy(entry)
            array = self._verified_map(path, entry, self.source.describe(entry.file), in_place is not None)
            with self._lock:
                self._maps[entry.file] = array

    def _cache_copy(self, entry: ShardEntry) -> Path:
        path = self.cache_dir / entry.file
        if path.is_file():
            try:
                self._check(path, entry, str(path))
                return path
            except ShardError as e:
                log.warning(progress_line("discarding cached shard", path=path, reason=e))
                self._forget(entry.file)
        self._download(entry, path)
        return path

    def _download(self, entry: ShardEntry, path: Path) -> None:
        """Fetch ``entry`` into ``path`` through a temporary file; kept only if it verifies."""
        with atomic_file(path) as f:
            writer = _HashingWriter(f)
            self.source.download(entry.file, writer, entry.bytes)  # type: ignore[arg-type]
            where = self.source.describe(entry.file)
            f.flush()
            self._check_layout(os.pread(f.fileno(), HEADER_SIZE, 0), os.fstat(f.fileno()).st_size, entry, where)
            if writer.h.hexdigest() != entry.sha256:
                raise ShardError(
                    f"shard {where} has sha256 {writer.h.hexdigest()}, the manifest lists {entry.sha256}: "
                    "the copy at the source is not the one the manifest describes (upload the dataset "
                    "folder exactly as 'swarmtrain data prepare' wrote it); the download was discarded"
                )
        with self._lock:
            self._cached[entry.file] = entry.bytes
            self.downloaded.append(entry.file)
        log.info(progress_line("fetched shard", file=entry.file, bytes=entry.bytes))

    def _verified_map(self, path: Path, entry: ShardEntry, where: str, in_place: bool) -> np.ndarray:
        if in_place:
            self._check(path, entry, where, fix="restore the file or re-run 'swarmtrain data prepare'")
        return np.memmap(path, dtype=self.dtype, mode="r", offset=HEADER_SIZE, shape=(entry.tokens,))

    def _check(self, path: Path, entry: ShardEntry, where: str, fix: str = "it is fetched again") -> None:
        self._check_size(path, entry, where)
        digest = _file_sha256(path)
        if digest != entry.sha256:
            raise ShardError(f"shard {where} has sha256 {digest}, the manifest lists {entry.sha256}: "
                             f"the file was modified or comes from another preparation; {fix}")

    def _check_size(self, path: Path, entry: ShardEntry, where: str) -> None:
        with path.open("rb") as f:
            header = f.read(HEADER_SIZE)
        self._check_layout(header, path.stat().st_size, entry, where)

    def _check_layout(self, header: bytes, size: int, entry: ShardEntry, where: str) -> None:
        width, tokens = decode_header(header, where)
        if width != self.dtype.itemsize:
            raise ShardError(f"shard {where} holds {width}-byte tokens, the manifest says {self.manifest.dtype}; "
                             "re-run 'swarmtrain data prepare'")
        check_shard_size(where, size, width, tokens, entry)

    # -- the size bound ---------------------------------------------------------------------
    def _touch(self, names: AbstractSet[str]) -> None:
        """Mark downloads as just used (the file's mtime keeps the order across restarts)."""
        with self._lock:
            used = [n for n in names if n in self._cached]
            for name in used:
                self._cached.move_to_end(name)
        for name in used:
            with contextlib.suppress(OSError):  # evicted by another thread meanwhile: nothing to mark
                os.utime(self.cache_dir / name)

    def _evict(self, pinned: set[str]) -> None:
        """Drop least recently used downloads until the cache fits ``max_bytes`` (pinned ones stay)."""
        with self._lock:
            total = sum(self._cached.values())
            victims = []
            for name, size in self._cached.items():
                if total <= self.max_bytes:
                    break
                if name not in pinned:
                    victims.append(name)
                    total -= size
            if total > self.max_bytes:
                log.warning(progress_line("shard cache over its bound: one request needs more shards than it allows",
                                          bytes=total, bound=self.max_bytes))
        for name in victims:
            self._forget(name)

    def _forget(self, name: str) -> None:
        with self._lock:
            self._cached.pop(name, None)
            self._maps.pop(name, None)  # the mapping stays valid for readers holding it
        (self.cache_dir / name).unlink(missing_ok=True)

    def _scan_cache(self) -> OrderedDict[str, int]:
        """Downloaded shards of this manifest already on disk, oldest use first."""
        known = {e.file for e in (*self.manifest.train, *self.manifest.val)}
        found = []
        if self.cache_dir.is_dir():
            for path in self.cache_dir.iterdir():
                if path.name in known and path.is_file():
                    st = path.stat()
                    found.append((st.st_mtime, path.name, st.st_size))
        return OrderedDict((name, size) for _, name, size in sorted(found))

    def _file_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self._file_locks.setdefault(name, threading.Lock())


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()
