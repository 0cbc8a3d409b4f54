"""Structured metrics (JSONL, one object per line) and console progress helpers.

Example:
    >>> metrics = MetricsWriter(Path("/tmp/state/metrics.jsonl"))
    >>> metrics.write({"window": 3, "val_loss": 4.2})
    >>> read_metrics(metrics.path)[-1]["window"]
    3
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler


class MetricsWriter:
    """Appends one JSON object per line; each line is flushed so a crash loses at most one."""

    def __init__(self, path: Path, *, clock: Any = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps({"ts": round(self._clock(), 3), **record}, sort_keys=False, default=str)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a metrics file; a torn last line (crash mid-write) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def setup_logging(level: str = "INFO", *, console: Console | None = None) -> logging.Logger:
    """Route the ``swarmtrain`` loggers through rich (stderr); returns the root project logger."""
    handler = RichHandler(console=console or Console(stderr=True), show_path=False, markup=False)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logger = logging.getLogger("swarmtrain")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def progress_line(kind: str, **fields: Any) -> str:
    """One human line, ``kind key=value ...``; floats shortened to 4 significant digits."""
    parts = [kind]
    for key, value in fields.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        parts.append(f"{key}={shown}")
    return " ".join(parts)
