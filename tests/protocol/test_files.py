"""Crash-safe writes: old or whole new file, temp removed on failure, mode set from the start."""

import multiprocessing
import os
import signal
import stat

import pytest

from protocol import files
from protocol.files import atomic_file, atomic_write, atomic_write_json


def _leftovers(directory):
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_replaces_the_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "deep" / "state.bin"
    atomic_write(target, b"old")
    atomic_write(target, b"NEW" * 1000)
    assert target.read_bytes() == b"NEW" * 1000
    assert _leftovers(target.parent) == []


def _crash_mid_write(path: str) -> None:
    # Replace fsync so the child dies after writing part of the temp file, before rename.
    def die(_fd: int) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    files.os.fsync = die  # type: ignore[assignment]
    atomic_write(files.Path(path), b"NEW" * 1000)


def test_crash_mid_write_keeps_previous_file(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write(target, b"old contents")
    proc = multiprocessing.get_context("fork").Process(target=_crash_mid_write, args=(str(target),))
    proc.start()
    proc.join(timeout=20)
    assert proc.exitcode == -signal.SIGKILL
    assert target.read_bytes() == b"old contents"


def test_failure_midway_keeps_the_old_file_and_removes_the_temp(tmp_path):
    target = tmp_path / "shard.bin"
    atomic_write(target, b"old contents")
    with pytest.raises(ValueError, match="checksum"), atomic_file(target) as fh:
        fh.write(b"half of the new")
        raise ValueError("checksum does not match")
    assert target.read_bytes() == b"old contents"
    assert _leftovers(tmp_path) == []


def test_failure_before_the_first_write_creates_nothing(tmp_path):
    target = tmp_path / "new.json"
    with pytest.raises(TypeError):
        atomic_write_json(target, {"not json": object()})
    assert not target.exists() and _leftovers(tmp_path) == []


def test_mode_is_applied(tmp_path):
    key, data = tmp_path / "key.pem", tmp_path / "data.bin"
    atomic_write(key, b"secret", mode=0o600)
    atomic_write(data, b"public")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o644


def test_json_is_sorted_and_readable(tmp_path):
    target = tmp_path / "scores.json"
    atomic_write_json(target, {"b": 1, "a": [1, 2]})
    text = target.read_text()
    assert text.index('"a"') < text.index('"b"')
