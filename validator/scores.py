"""Per-miner moving-average scores, persisted as atomic JSON so a restart loses none.

Example:
    >>> book = ScoreBook(Path("/tmp/v/scores.json"))
    >>> book.update(window=4, verdicts={1: verdict}, submitted=[1], hotkeys={1: "hk1", 2: "hk2"})
    >>> book.weights()          # uid -> weight summing to 1
    {1: 1.0}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

from node.logs import progress_line
from protocol import criteria
from protocol.criteria import MinerScore
from protocol.files import atomic_write_json

log = logging.getLogger("swarmtrain.validator.scores")

FORMAT = "swarmtrain-scores/2"
LEGACY_FORMAT = "swarmtrain-scores/1"  # criteria v2 records: a restart under v3 starts afresh


class ScoreBook:
    """The validator's ``MinerScore`` per uid, saved after every change."""

    def __init__(self, path: Path, params: criteria.CriteriaParams = criteria.DEFAULT_PARAMS) -> None:
        self.path = Path(path)
        self.params = params
        self.scores: dict[int, MinerScore] = {}
        self.last_window = -1  # last window whose results were applied
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
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read scores file {self.path}: {exc}") from exc

    def save(self) -> None:
        doc = {"format": FORMAT, "last_window": self.last_window, "scores": criteria.dump_scores(self.scores)}
        atomic_write_json(self.path, doc)

    def update(
        self, window: int, verdicts: Mapping[int, criteria.Verdict], submitted: Iterable[int],
        hotkeys: Mapping[int, str],
    ) -> dict[int, MinerScore]:
        """Roll one window's verdicts in, idempotent per window; save."""
        self.scores = criteria.update_scores(self.scores, window, verdicts, submitted, hotkeys, self.params)
        self.last_window = max(self.last_window, window)
        self.save()
        return self.scores

    def last_evaluated(self) -> dict[int, int]:
        return {uid: s.last_evaluated for uid, s in self.scores.items()}

    def recent_z(self) -> dict[int, list[float]]:
        return {uid: list(s.recent_z) for uid, s in self.scores.items()}

    def ema(self) -> dict[int, float]:
        return {uid: s.ema for uid, s in self.scores.items()}

    def weights(self) -> dict[int, float]:
        return criteria.weights_from_scores(self.scores)
