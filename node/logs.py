"""Structured metrics (JSONL, one object per line), the one logging set-up, and log-line helpers.

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
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.logging import RichHandler


class MetricsWriter:
    """Appends one JSON object per line; each line is flushed so a crash loses at most one."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
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


# Characters that must not reach a terminal or split a log line: C0 and C1 controls, DEL,
# the Unicode line/paragraph separators and the bidirectional overrides ("trojan source").
_UNSAFE = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F),
           *range(0x2066, 0x206A)]
_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
_ESCAPES = {c: _NAMED.get(c, f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _UNSAFE}
_NEEDS_QUOTES = re.compile(r'[\s"=]')
PLAIN_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
ROOT_LOGGER = "swarmtrain"  # every logger of the project is "swarmtrain.<part>"


def safe_text(value: object) -> str:
    """``str(value)`` with control characters and terminal escapes written out (``\\n``, ``\\x1b``).

    For any text that came from the network (a request, a response, chain data) before it
    is logged: it can neither split a log record nor drive the operator's terminal.
    """
    return str(value).translate(_ESCAPES)


class OneLineFormatter(logging.Formatter):
    """One record, one line: message and traceback with every control character escaped."""

    def __init__(self, fmt: str = PLAIN_FORMAT, datefmt: str = DATE_FORMAT) -> None:
        super().__init__(fmt, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        return safe_text(super().format(record))


class SafeMessageFormatter(logging.Formatter):
    """For the terminal (rich lays the line out): the message escaped, a traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return safe_text(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return "\n".join(safe_text(line) for line in super().formatException(ei).split("\n"))


def log_handler(stream: TextIO) -> logging.Handler:
    """rich on a terminal; elsewhere (files, pipes) a plain handler that never wraps a record."""
    if stream.isatty():
        handler: logging.Handler = RichHandler(console=Console(file=stream), show_path=False, markup=False)
        handler.setFormatter(SafeMessageFormatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(OneLineFormatter())
    return handler


def setup_logging(level: str = "INFO", *, stream: TextIO | None = None) -> logging.Logger:
    """Route every project logger (``swarmtrain.*``) to ``stream`` (stderr); returns their root.

    A node started by ``swarmtrain local`` writes to a file: there each record is one plain
    line, ``2025-01-31T12:00:00.123 INFO swarmtrain.miner: submitted w=12 validator=0 ...``.
    """
    logger = logging.getLogger(ROOT_LOGGER)
    logger.handlers[:] = [log_handler(stream or sys.stderr)]
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def _shown(value: Any) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else safe_text(value)
    return f'"{text.replace(chr(34), chr(92) + chr(34))}"' if not text or _NEEDS_QUOTES.search(text) else text


def progress_line(kind: str, **fields: Any) -> str:
    """One log line, ``kind key=value ...``: floats to 4 significant digits, text escaped
    (``safe_text``) and quoted when it holds spaces, quotes or ``=``.

    >>> progress_line("refused", uid=3, hotkey="5F..", reason="window 9 is closed", loss=0.123456)
    'refused uid=3 hotkey=5F.. reason="window 9 is closed" loss=0.1235'
    """
    return " ".join([kind, *(f"{key}={_shown(value)}" for key, value in fields.items())])
