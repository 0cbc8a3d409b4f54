"""The one logging set-up: one plain line per record off a terminal, key=value fields,
network text escaped, and every logger of the project under ``swarmtrain.``."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import pytest

from node.logs import ROOT_LOGGER, progress_line, safe_text, setup_logging

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("protocol", "chain", "node", "miner", "validator", "swarmtrain")
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) swarmtrain[.\w]*: ")
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging():
    logger = logging.getLogger(ROOT_LOGGER)
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def fields(line: str) -> dict[str, str]:
    return {k: v[1:-1].replace('\\"', '"') if v.startswith('"') else v for k, v in FIELD.findall(line)}


@pytest.mark.parametrize(("raw", "shown"), [
    ("plain 5F3sa2TJ", "plain 5F3sa2TJ"),
    ("two\nlines\r\n", "two\\nlines\\r\\n"),
    ("\x1b[2J\x1b]0;pwned\x07", "\\x1b[2J\\x1b]0;pwned\\x07"),  # clear screen, set the window title
    ("tab\tnul\x00del\x7f", "tab\\tnul\\x00del\\x7f"),
    ("c1 \x85 \x9b31m", "c1 \\x85 \\x9b31m"),  # NEL and the one-byte CSI
    ("sep\u2028bidi\u202eevil\u2066", "sep\\u2028bidi\\u202eevil\\u2066"),
    ("unicode θ_w ✓ stays", "unicode θ_w ✓ stays"),
    (12, "12"),
])
def test_safe_text_escapes_controls_and_keeps_the_rest(raw, shown) -> None:
    assert safe_text(raw) == shown


def test_progress_line_is_key_value_and_parses_back() -> None:
    line = progress_line("refused", uid=3, hotkey="5Fabc", status=409, reason='window 9 is "closed"\n',
                         loss=0.123456, empty="", none=None)
    assert line.startswith("refused uid=3 hotkey=5Fabc ")
    assert "\n" not in line
    assert fields(line) == {"uid": "3", "hotkey": "5Fabc", "status": "409", "reason": 'window 9 is "closed"\\n',
                            "loss": "0.1235", "empty": "", "none": "None"}


def test_a_file_gets_one_unwrapped_line_per_record(restore_logging) -> None:
    stream = io.StringIO()
    setup_logging("DEBUG", stream=stream)
    log = logging.getLogger("swarmtrain.validator.intake")
    reason = "x" * 300 + "\nforged: accepted window 9 uid 0\x1b[0m"
    log.info(progress_line("refused", uid=4, hotkey="5Fabc", code="bad_payload", reason=reason))
    log.warning("free text from a peer: %s", "a\nb")  # the formatter still keeps it one line
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        log.exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and all(LINE.match(line) for line in lines), lines
    assert "\x1b" not in stream.getvalue()
    first = fields(lines[0])
    assert (first["uid"], first["hotkey"], first["code"]) == ("4", "5Fabc", "bad_payload")
    assert first["reason"] == "x" * 300 + "\\nforged: accepted window 9 uid 0\\x1b[0m"
    assert lines[1].endswith("free text from a peer: a\\nb")
    assert "Traceback (most recent call last):\\n" in lines[2] and "ValueError: bad\\nvalue" in lines[2]


def test_a_terminal_gets_rich_but_still_no_escape_from_the_network(restore_logging) -> None:
    stream = Tty()
    setup_logging("INFO", stream=stream)
    logging.getLogger("swarmtrain.miner").info("reason %s", "\x1b]0;pwned\x07")
    out = stream.getvalue()
    assert "\\x1b" in out and "\\x07" in out  # written out, while rich styles the rest of the line
    assert "\x1b]" not in out and "\x07" not in out  # so the window title is not set


def test_chain_and_devnet_logs_go_through_the_set_up(restore_logging) -> None:
    stream = io.StringIO()
    setup_logging("DEBUG", stream=stream)
    from chain import client
    from chain.devnet import server

    assert server.log.name.startswith(f"{ROOT_LOGGER}.")
    server.log.warning("block production failed")
    client._log_close_failure(RuntimeError("gone"))  # the chain client's one log call
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and all(LINE.match(line) for line in lines), lines


def test_every_logger_of_the_project_is_under_the_root() -> None:
    """A logger outside ``swarmtrain.`` would escape ``setup_logging`` (format, level, escaping)."""
    names = []
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            names += [(path.name, m) for m in re.findall(r"getLogger\(([^)]*)\)", path.read_text())]
    assert names
    outside = [(f, n) for f, n in names if not re.fullmatch(rf'"{ROOT_LOGGER}(\.[\w.]+)?"|ROOT_LOGGER', n)]
    assert outside == []
