"""Accepted submissions, per window, in memory with a bound (one per hotkey and window).

Example:
    >>> store = SubmissionStore(max_per_window=2)
    >>> store.add(StoredSubmission(window=3, uid=1, hotkey="hk", header=h, payload=b"..", update=u))
    >>> [s.uid for s in store.for_window(3)]
    [1]
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from protocol.codec import SparseUpdate


class DuplicateSubmission(Exception):
    """This hotkey already has an accepted submission for the window."""


class WindowFull(Exception):
    """The window holds as many submissions as the bound allows."""


_arrival = itertools.count()


@dataclass(frozen=True)
class StoredSubmission:
    """One accepted submission; ``arrival`` orders submissions (earlier wins copy disputes)."""

    window: int
    uid: int
    hotkey: str
    header: Any  # protocol.messages.Submission
    payload: bytes
    update: SparseUpdate
    received_at: float = field(default_factory=time.time)
    arrival: int = field(default_factory=lambda: next(_arrival))


class SubmissionStore:
    """Submissions of open windows; closed windows are dropped with ``drop_through``."""

    def __init__(self, *, max_per_window: int = 1024) -> None:
        self.max_per_window = max_per_window
        self._by_window: dict[int, dict[str, StoredSubmission]] = {}

    def add(self, sub: StoredSubmission) -> None:
        """Store ``sub``; raises ``DuplicateSubmission`` or ``WindowFull`` and stores nothing then."""
        slot = self._by_window.setdefault(sub.window, {})
        if sub.hotkey in slot:
            raise DuplicateSubmission(f"hotkey {sub.hotkey} already submitted for window {sub.window}")
        if len(slot) >= self.max_per_window:
            raise WindowFull(f"window {sub.window} already holds {len(slot)} submissions")
        slot[sub.hotkey] = sub

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
