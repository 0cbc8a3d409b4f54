"""Crash-safe file writes: the one way every node writes state to disk.

A reader sees either the old file or the whole new one, never a torn one, and a crash at
any point leaves the old file intact: the bytes go to a temporary file in the same
directory (so the rename cannot cross file systems), are fsynced, renamed over the target,
and the directory is fsynced (the rename is durable only once its entry is on disk). On any
failure, the temporary file is removed and the target is untouched.

It lives in ``protocol`` because that is the bottom layer: the chain, node, miner and
validator packages, and the data caches here, all write through it.

Example:
    >>> atomic_write(Path("/tmp/x/scores.json"), b"{}")
    >>> atomic_write(Path("/tmp/x/key.pem"), pem, mode=0o600)     # private from the first byte
    >>> with atomic_file(Path("/tmp/x/shard.bin")) as fh:        # streamed; kept only if no error
    ...     fh.write(chunk)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

DEFAULT_MODE = 0o644  # plain data; keys pass 0o600


@contextlib.contextmanager
def atomic_file(path: Path, *, mode: int = DEFAULT_MODE) -> Iterator[IO[bytes]]:
    """A binary file handle whose contents replace ``path`` when the block exits cleanly.

    Raising inside the block (e.g. a checksum that does not match) discards the bytes
    written and leaves ``path`` as it was. ``mode`` is set before any byte is written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes, *, mode: int = DEFAULT_MODE) -> None:
    """Replace ``path`` with ``data`` (see the module docstring for the guarantees)."""
    with atomic_file(path, mode=mode) as fh:
        fh.write(data)


def atomic_write_json(path: Path, obj: Any) -> None:
    """``obj`` as sorted, indented UTF-8 JSON, written with ``atomic_write``."""
    atomic_write(path, json.dumps(obj, sort_keys=True, indent=1).encode("utf-8"))


def fsync_dir(directory: Path) -> None:
    """Flush a directory's entries (a rename or a new file in it) to disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
