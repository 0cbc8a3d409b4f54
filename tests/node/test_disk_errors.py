"""A full or read-only disk: one clear error naming the path and the fix, no temporary file
left behind (every writer: plain files, miner and validator checkpoints, metrics), and the
next write after space returns succeeds with nothing lost."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from miner.state import MinerState, MinerStateStore
from node.checkpoints import CheckpointStore
from node.logs import MetricsWriter, read_metrics
from node.model_state import ModelState
from protocol import files
from protocol.files import StateWriteError, atomic_file, atomic_write
from protocol.subnet import SubnetConfig

CFG = SubnetConfig(preset="tiny", dataset_hash="", seq_len=16, blocks_per_window=10)


def _temporaries(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".tmp-")]


def _enospc(*_a: object, **_k: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@contextmanager
def disk_full(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every fsync fails with ENOSPC (as a full disk answers when the data reaches it)."""
    with monkeypatch.context() as m:
        m.setattr(os, "fsync", _enospc)
        yield


@contextmanager
def read_only(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``directory`` cannot be written: mode 0555, and (root ignores modes) creating files or
    directories under it fails with EROFS, as on a read-only mount."""
    real_open, real_mkdir = os.open, os.mkdir
    inside = str(directory.resolve())

    def guarded_open(path, flags, *a, **k):  # type: ignore[no-untyped-def]
        if str(path).startswith(inside) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *a, **k)

    def guarded_mkdir(path, *a, **k):  # type: ignore[no-untyped-def]
        if str(path).startswith(inside):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_mkdir(path, *a, **k)

    directory.chmod(0o555)
    try:
        with monkeypatch.context() as m:
            if os.geteuid() == 0:
                m.setattr(os, "open", guarded_open)
                m.setattr(os, "mkdir", guarded_mkdir)
            yield
    finally:
        directory.chmod(0o755)


def test_a_full_disk_names_the_path_and_the_fix_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "scores.json"
    atomic_write(target, b"old")
    with disk_full(monkeypatch), pytest.raises(StateWriteError) as err:
        atomic_write(target, b"new" * 1000)
    line = str(err.value)
    assert line.startswith(f"cannot write {target}: No space left on device") and "free space" in line
    assert err.value.errno == errno.ENOSPC and "\n" not in line
    assert target.read_bytes() == b"old" and _temporaries(tmp_path) == []
    atomic_write(target, b"new")  # space is back
    assert target.read_bytes() == b"new"


def test_a_read_only_directory_names_the_path_and_the_fix(tmp_path, monkeypatch):
    state = tmp_path / "state"
    state.mkdir()
    atomic_write(state / "model.bin", b"old")
    with read_only(state, monkeypatch), pytest.raises(StateWriteError) as err, atomic_file(state / "model.bin") as fh:
        fh.write(b"new")
    assert str(state / "model.bin") in str(err.value) and "writable" in str(err.value)
    assert (state / "model.bin").read_bytes() == b"old" and _temporaries(state) == []


def test_other_errors_inside_the_block_pass_unchanged(tmp_path):
    with pytest.raises(ConnectionResetError), atomic_file(tmp_path / "shard.bin"):
        raise ConnectionResetError("peer went away")
    assert _temporaries(tmp_path) == []


def _state(window: int) -> MinerState:
    model = ModelState.initial(CFG)
    model.window = window
    return MinerState(model=model)


def test_a_miner_checkpoint_on_a_full_disk_keeps_the_previous_one(tmp_path, monkeypatch):
    store = MinerStateStore(tmp_path)
    store.save(_state(3))
    with disk_full(monkeypatch), pytest.raises(StateWriteError) as err:
        store.save(_state(4))
    assert "ckpt-0000000004" in str(err.value) and "free space" in str(err.value)
    assert _temporaries(tmp_path) == [] and not (tmp_path / "ckpt-0000000004").exists()
    loaded = store.load(CFG)
    assert loaded is not None and loaded.window == 3
    store.save(_state(4))
    loaded = store.load(CFG)
    assert loaded is not None and loaded.window == 4


def test_a_miner_checkpoint_in_a_read_only_directory_is_one_clear_error(tmp_path, monkeypatch):
    store = MinerStateStore(tmp_path / "state")
    store.save(_state(3))
    with read_only(tmp_path / "state", monkeypatch), pytest.raises(StateWriteError, match="writable"):
        store.save(_state(4))
    assert _temporaries(tmp_path) == []
    loaded = store.load(CFG)
    assert loaded is not None and loaded.window == 3


def test_a_validator_checkpoint_on_a_full_disk_is_not_half_published(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path)
    store.put_checkpoint(2, b"two", {"netuid": 1})
    with disk_full(monkeypatch), pytest.raises(StateWriteError):
        store.put_checkpoint(4, b"four" * 100, {"netuid": 1})
    assert store.latest_checkpoint() == 2 and _temporaries(tmp_path) == []
    store.put_checkpoint(4, b"four", {"netuid": 1})
    assert store.latest_checkpoint() == 4


def test_a_metrics_line_on_a_full_disk_is_cut_back_so_the_next_one_is_whole(tmp_path, monkeypatch):
    metrics = MetricsWriter(tmp_path / "metrics.jsonl")
    metrics.write({"window": 1})
    with disk_full(monkeypatch), pytest.raises(StateWriteError, match="metrics.jsonl"):
        metrics.write({"window": 2, "pad": "x" * 1000})
    metrics.write({"window": 3})
    assert [r["window"] for r in read_metrics(metrics.path)] == [1, 3]
    assert files.Path(metrics.path).read_text().count("\n") == 2
