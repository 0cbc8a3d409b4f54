"""Crash-safe file writes: the one way every node writes state to disk.

A reader sees either the old file or the whole new one, never a torn one, and a crash at
any point leaves the old file intact: the bytes go to a temporary file in the same
directory (so the rename cannot cross file systems), are fsynced, renamed over the target,
and the directory is fsynced (the rename is durable only once its entry is on disk). On any
failure, the temporary file is removed and the target is untouched.

A full disk, a read-only or foreign-owned directory raise ``StateWriteError`` (an
``OSError``, errno kept): one line naming the path and what to do about it. A node that
catches it keeps its state in memory and writes again later, so it recovers once the
operator frees space.

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
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

DEFAULT_MODE = 0o644  # plain data; keys pass 0o600

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
DISK_ERRNOS = frozenset(_NO_SPACE | _NOT_WRITABLE | {errno.EIO})


class StateWriteError(OSError):
    """A state file could not be written because of the disk, not the data.

    ``str()`` is the one line for the operator, e.g. ``cannot write /s/model.safetensors: No
    space left on device — free space on that disk; ...``; ``path`` and ``errno`` are kept.
    """

    def __init__(self, path: Path, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.path = Path(path)
        self.cause = cause

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.strerror} — {fix_for(self.errno, self.path)}"


def fix_for(code: int | None, path: Path) -> str:
    """What an operator does about a failed write of ``path``."""
    if code in _NO_SPACE:
        return (f"free space on the disk holding {path.parent} (or move --state to a bigger one); "
                "the node keeps its state in memory and writes it again once there is room")
    if code in _NOT_WRITABLE:
        return (f"make {path.parent} writable by this user (it is read-only or owned by someone else), "
                "or point --state at a writable directory")
    return f"check the disk holding {path.parent} (an I/O error); the node writes again on its next save"


def is_disk_error(exc: BaseException) -> bool:
    """An ``OSError`` a full, read-only or failing disk causes (not a bug, not the network)."""
    return isinstance(exc, OSError) and exc.errno in DISK_ERRNOS


@contextlib.contextmanager
def atomic_file(path: Path, *, mode: int = DEFAULT_MODE) -> Iterator[IO[bytes]]:
    """A binary file handle whose contents replace ``path`` when the block exits cleanly.

    Raising inside the block (e.g. a checksum that does not match) discards the bytes
    written and leaves ``path`` as it was. ``mode`` is set before any byte is written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _as_state_error(exc, path) from exc
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, StateWriteError) and is_disk_error(exc):
            raise StateWriteError(path, exc) from exc
        raise
    try:
        fsync_dir(path.parent)
    except OSError as exc:
        raise _as_state_error(exc, path) from exc


def _as_state_error(exc: OSError, path: Path) -> OSError:
    return StateWriteError(path, exc) if is_disk_error(exc) and not isinstance(exc, StateWriteError) else exc


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
