"""One process per state directory: an exclusive ``flock`` on ``<state>/LOCK``.

Two nodes on one state directory would share (and corrupt) its model, journal and
checkpoints, and the second would re-serve the first one's endpoint. The lock file holds
the holder's pid, so the refusal can name it. The kernel releases a ``flock`` when its
process exits, however it exits (kill -9 included): a stale ``LOCK`` file from a crash
never blocks a restart. Holding the lock also makes it safe to sweep the temporary files
a crashed writer left (``sweep_temporaries``): no other writer can be working there.

Example:
    >>> lock = StateLock.acquire(Path("~/.swarmtrain/miner/m1").expanduser(), role="miner")
    >>> ...                                     # run the node
    >>> lock.release()                          # or let the process exit
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from protocol.files import StateWriteError, is_disk_error

LOCK_FILE = "LOCK"
# What atomic writers leave behind when killed mid-write: protocol.files' ".<name>.<rand>.tmp",
# the miner store's ".tmp-ckpt-*" directories.
TEMP_PATTERNS = (".*.tmp", ".tmp-*")


class StateLockedError(RuntimeError):
    """Another live process holds the state directory."""


class StateLock:
    """An exclusive lock on one state directory, held until ``release`` or process exit."""

    def __init__(self, directory: Path, fd: int) -> None:
        self.directory = directory
        self.fd: int | None = fd

    @classmethod
    def acquire(cls, directory: Path, *, role: str = "node") -> StateLock:
        """Lock ``directory`` (created if missing) and record our pid; ``StateLockedError``
        naming the holder's pid when another process has it."""
        directory = Path(directory)
        path = directory / LOCK_FILE
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateWriteError(path, exc) if is_disk_error(exc) else exc from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise StateLockedError(
                f"state directory {directory} is in use by another process (pid {holder}): a second {role} on it "
                f"would corrupt its state; stop pid {holder} first, or give this {role} another --state"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(directory, fd)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None

    def __enter__(self) -> StateLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


def sweep_temporaries(directory: Path) -> list[Path]:
    """Remove the temporary files and directories crashed writers left under ``directory``
    (call only while holding its ``StateLock``); returns what was removed."""
    removed = []
    found = sorted({p for pattern in TEMP_PATTERNS for p in Path(directory).rglob(pattern)})
    for path in found:
        if not path.exists() and not path.is_symlink():
            continue  # inside a directory removed just before
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed
