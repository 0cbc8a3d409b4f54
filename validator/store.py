"""Accepted submissions, per window, in memory with a bound (one per hotkey and window),
and optionally on disk (``SubmissionJournal``) so a restarted validator closes the window
it was collecting with every submission it had accepted.

Example:
    >>> store = SubmissionStore(max_per_window=2, journal=SubmissionJournal(state / "submissions"))
    >>> store.add(sub); store.persist(sub)          # before answering 200
    >>> [s.uid for s in store.for_window(3)]
    [1]
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from node.logs import progress_line
from protocol.codec import SparseUpdate
from protocol.files import atomic_write
from protocol.messages import Submission, pack_envelope
from protocol.outputs_codec import TeacherOutputs
from protocol.similarity import sketch, update_norm

log = logging.getLogger("swarmtrain.validator.store")

RECORD_MAGIC = b"STSUB1\n"


class DuplicateSubmission(Exception):
    """This hotkey already has an accepted submission for the window."""


class WindowFull(Exception):
    """The window holds as many submissions as the bound allows."""


class _Arrivals:
    """Arrival numbers, increasing for the life of the process (and past reloaded ones)."""

    def __init__(self) -> None:
        self.next = 0

    def take(self) -> int:
        n, self.next = self.next, self.next + 1
        return n

    def at_least(self, n: int) -> None:
        self.next = max(self.next, n)


_arrivals = _Arrivals()


@dataclass(frozen=True)
class StoredSubmission:
    """One accepted submission; ``arrival`` orders submissions (earlier wins copy disputes).

    Held until its window closes, so it keeps only the received ``payload`` bytes and, for a
    sparse update (gradients), the decoded update's summary (``sketch``: ``SKETCH_DIM`` float64,
    32 KiB; ``norm``), never the decoded update: the evaluator decodes the payload again when
    it needs the values. Teacher outputs (outputs mode) keep no summary (``sketch`` is None):
    the verifier decodes the payload of each submission it checks.
    """

    window: int
    uid: int
    hotkey: str
    header: Submission
    payload: bytes
    sketch: np.ndarray | None
    norm: float
    received_at: float = field(default_factory=time.time)
    arrival: int = field(default_factory=_arrivals.take)

    @classmethod
    def summarize(cls, header: Submission, payload: bytes, update: SparseUpdate | TeacherOutputs,
                  spec: Mapping[str, tuple[int, ...]], **when: Any) -> StoredSubmission:
        """A submission of ``header`` whose ``payload`` decoded to ``update`` (then dropped)."""
        if isinstance(update, TeacherOutputs):
            return cls(header.window, header.uid, header.hotkey, header, payload, None, 0.0, **when)
        return cls(header.window, header.uid, header.hotkey, header, payload, sketch(update, spec),
                   update_norm(update), **when)

    def update_sketch(self) -> np.ndarray:
        """The sketch of a sparse update; teacher outputs have none (a bug to ask for it)."""
        if self.sketch is None:
            raise TypeError(f"submission of uid {self.uid} holds teacher outputs, not a sparse update")
        return self.sketch


def encode_record(sub: StoredSubmission) -> bytes:
    """``magic | u32 meta length | meta JSON (arrival, received_at) | envelope(header, payload)``."""
    meta = json.dumps({"arrival": sub.arrival, "received_at": sub.received_at}).encode()
    return RECORD_MAGIC + len(meta).to_bytes(4, "little") + meta + pack_envelope(sub.header, sub.payload)


@dataclass(frozen=True)
class JournalRecord:
    """One stored submission as read back: still to be re-validated by intake."""

    path: Path
    arrival: int
    received_at: float
    envelope: bytes


def decode_record(path: Path, data: bytes) -> JournalRecord:
    """Parse ``encode_record`` bytes; raises ``ValueError`` on anything malformed."""
    if not data.startswith(RECORD_MAGIC) or len(data) < len(RECORD_MAGIC) + 4:
        raise ValueError("not a stored submission (bad magic)")
    start = len(RECORD_MAGIC) + 4
    size = int.from_bytes(data[len(RECORD_MAGIC) : start], "little")
    try:
        meta = json.loads(data[start : start + size])
        arrival, received_at = int(meta["arrival"]), float(meta["received_at"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"bad record metadata: {exc}") from exc
    if arrival < 0:
        raise ValueError("negative arrival")
    return JournalRecord(path, arrival, received_at, data[start + size :])


class SubmissionJournal:
    """``root/<window %08d>/<uid>.bin``: accepted submissions on disk, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, window: int, uid: int) -> Path:
        return self.root / f"{window:08d}" / f"{uid}.bin"

    def write(self, sub: StoredSubmission) -> None:
        atomic_write(self.path(sub.window, sub.uid), encode_record(sub))

    def remove(self, sub: StoredSubmission) -> None:
        self.path(sub.window, sub.uid).unlink(missing_ok=True)

    def windows(self) -> list[int]:
        if not self.root.is_dir():
            return []
        return sorted(int(p.name) for p in self.root.iterdir() if p.is_dir() and p.name.isdigit())

    def read_window(self, window: int) -> Iterator[JournalRecord]:
        """Every readable record of ``window``; unreadable ones are logged and skipped."""
        directory = self.root / f"{window:08d}"
        files = sorted(directory.glob("*.bin")) if directory.is_dir() else []
        for path in files:
            if not path.stem.isdigit():
                continue
            try:
                yield decode_record(path, path.read_bytes())
            except (OSError, ValueError) as exc:
                log.warning(progress_line("skipping stored submission", path=path, reason=exc))

    def prune(self, keep: int | None = None, *, through: int | None = None) -> None:
        """Delete window directories: every one but ``keep``, or every one <= ``through``."""
        for w in self.windows():
            if (keep is not None and w != keep) or (through is not None and w <= through):
                shutil.rmtree(self.root / f"{w:08d}", ignore_errors=True)


class SubmissionStore:
    """Submissions of open windows; closed windows are dropped with ``drop_through``."""

    def __init__(self, *, max_per_window: int = 1024, journal: SubmissionJournal | None = None) -> None:
        self.max_per_window = max_per_window
        self.journal = journal
        self._by_window: dict[int, dict[str, StoredSubmission]] = {}

    def add(self, sub: StoredSubmission) -> None:
        """Store ``sub``; raises ``DuplicateSubmission`` or ``WindowFull`` and stores nothing then."""
        slot = self._by_window.setdefault(sub.window, {})
        if sub.hotkey in slot:
            raise DuplicateSubmission(f"hotkey {sub.hotkey} already submitted for window {sub.window}")
        if len(slot) >= self.max_per_window:
            raise WindowFull(f"window {sub.window} already holds {len(slot)} submissions")
        slot[sub.hotkey] = sub

    def persist(self, sub: StoredSubmission) -> None:
        """Write an added submission to the journal (no-op without one); raises ``OSError``."""
        if self.journal is not None:
            self.journal.write(sub)

    def discard(self, sub: StoredSubmission) -> None:
        """Undo ``add`` (and a partial ``persist``) of ``sub``."""
        slot = self._by_window.get(sub.window, {})
        if slot.get(sub.hotkey) is sub:
            del slot[sub.hotkey]
        if self.journal is not None:
            self.journal.remove(sub)

    def restore(self, sub: StoredSubmission) -> None:
        """Add a submission read back from the journal, keeping its arrival order."""
        self.add(sub)
        _arrivals.at_least(sub.arrival + 1)

    def has(self, window: int, hotkey: str) -> bool:
        return hotkey in self._by_window.get(window, {})

    def for_window(self, window: int) -> list[StoredSubmission]:
        """Submissions of ``window`` in arrival order."""
        return sorted(self._by_window.get(window, {}).values(), key=lambda s: s.arrival)

    def count(self, window: int) -> int:
        return len(self._by_window.get(window, {}))

    def drop_through(self, window: int) -> None:
        """Forget every window <= ``window``."""
        for w in [w for w in self._by_window if w <= window]:
            del self._by_window[w]
        if self.journal is not None:
            self.journal.prune(through=window)
