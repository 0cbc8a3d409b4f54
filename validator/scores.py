"""Per-miner moving-average scores, persisted as atomic JSON so a restart loses none.

Example:
    >>> book = ScoreBook(Path("/tmp/v/scores.json"))
    >>> book.update(window=4, verdicts={1: verdict}, submitted=[1], hotkeys={1: "hk1", 2: "hk2"},
    ...             median_norm=0.02)
    >>> book.weights()          # uid -> weight summing to 1
    {1: 1.0}
    >>> book.previous_norm(5)   # window 5's reference norm: window 4's median update norm
    0.02
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from node.logs import progress_line
from protocol import criteria
from protocol.criteria import MinerScore
from protocol.files import atomic_write_json

log = logging.getLogger("swarmtrain.validator.scores")

FORMAT = "swarmtrain-scores/2"
LEGACY_FORMAT = "swarmtrain-scores/1"  # criteria v2 records: a restart under v3 starts afresh
NORM_WINDOWS = 3  # windows whose median update norm the book keeps


class ScoreBook:
    """The validator's ``MinerScore`` per uid, saved after every change."""

    def __init__(self, path: Path, params: criteria.CriteriaParams = criteria.DEFAULT_PARAMS) -> None:
        self.path = Path(path)
        self.params = params
        self.scores: dict[int, MinerScore] = {}
        self.last_window = -1  # last window whose results were applied
        self.median_norms: dict[int, float] = {}  # window -> median update norm (the next window's reference)
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if doc.get("format") == LEGACY_FORMAT:
                log.warning(progress_line("scores of a previous criteria version: starting afresh", path=self.path))
                return
            if doc.get("format") != FORMAT:
                raise ValueError(f"unknown format {doc.get('format')!r}")
            self.scores = criteria.load_scores(doc["scores"])
            self.last_window = int(doc["last_window"])
            self.median_norms = {int(w): _positive_norm(n) for w, n in doc.get("median_norms", {}).items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read scores file {self.path}: {exc}") from exc

    def save(self) -> None:
        doc = {"format": FORMAT, "last_window": self.last_window, "scores": criteria.dump_scores(self.scores),
               "median_norms": {str(w): n for w, n in sorted(self.median_norms.items())}}
        atomic_write_json(self.path, doc)

    def update(
        self, window: int, verdicts: Mapping[int, criteria.Verdict], submitted: Iterable[int],
        hotkeys: Mapping[int, str], median_norm: float | None = None,
    ) -> dict[int, MinerScore]:
        """Roll one window's verdicts in, idempotent per window; save. ``median_norm``: the
        window's median update norm (``WindowEvaluation.median_norm``), kept in the same save
        so the next window's reference norm survives a restart."""
        self.scores = criteria.update_scores(self.scores, window, verdicts, submitted, hotkeys, self.params)
        self.last_window = max(self.last_window, window)
        if median_norm is not None:
            self.median_norms[window] = _positive_norm(median_norm)
            self.median_norms = dict(sorted(self.median_norms.items())[-NORM_WINDOWS:])
        self.save()
        return self.scores

    def previous_norm(self, window: int) -> float | None:
        """The median update norm of the last window before ``window`` that had one (what
        ``criteria.reference_norm`` rescales ``window``'s updates to); None if none is kept."""
        earlier = [w for w in self.median_norms if w < window]
        return self.median_norms[max(earlier)] if earlier else None

    def last_evaluated(self) -> dict[int, int]:
        return {uid: s.last_evaluated for uid, s in self.scores.items()}

    def recent_z(self) -> dict[int, list[float]]:
        return {uid: list(s.recent_z) for uid, s in self.scores.items()}

    def ema(self) -> dict[int, float]:
        return {uid: s.ema for uid, s in self.scores.items()}

    def weights(self) -> dict[int, float]:
        return criteria.weights_from_scores(self.scores)


def _positive_norm(value: object) -> float:
    norm = float(value)  # type: ignore[arg-type]
    if not (math.isfinite(norm) and norm > 0):
        raise ValueError(f"a median norm must be positive and finite, got {value!r}")
    return norm
