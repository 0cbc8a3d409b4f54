"""One process per state directory: the second refuses naming the holder's pid; a crash frees it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.state_lock import LOCK_FILE, StateLock, StateLockedError, sweep_temporaries
from swarmtrain.cli import main

ROOT = Path(__file__).resolve().parents[2]
HOLD = "import sys, time; from node.state_lock import StateLock; StateLock.acquire(sys.argv[1]); print('held', flush=True); time.sleep(60)"


def test_a_second_holder_is_refused_with_the_pid_and_release_frees_it(tmp_path):
    lock = StateLock.acquire(tmp_path / "state", role="miner")
    assert (tmp_path / "state" / LOCK_FILE).read_text().strip() == str(os.getpid())
    with pytest.raises(StateLockedError) as err:
        StateLock.acquire(tmp_path / "state", role="miner")
    assert f"pid {os.getpid()}" in str(err.value) and "another --state" in str(err.value)
    lock.release()
    StateLock.acquire(tmp_path / "state").release()


def test_a_killed_holder_leaves_no_lock_behind(tmp_path):
    state = tmp_path / "state"
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(state)], stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"held"
        with pytest.raises(StateLockedError, match=f"pid {child.pid}"):
            StateLock.acquire(state)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    deadline = time.monotonic() + 5
    while True:  # the kernel drops the flock with the process; the stale LOCK file does not matter
        try:
            StateLock.acquire(state).release()
            break
        except StateLockedError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


@pytest.mark.parametrize("role", ["miner", "validator"])
def test_a_second_node_on_a_state_directory_is_one_error_line(tmp_path, capsys, role):
    state = tmp_path / role
    with StateLock.acquire(state):
        assert main([role, "--netuid", "1", "--state", str(state), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and len(lines) == 1, err
    assert f"is in use by another process (pid {os.getpid()})" in lines[0] and str(state) in lines[0]


def test_sweeping_removes_what_crashed_writers_left(tmp_path):
    (tmp_path / ".model.safetensors.abc123.tmp").write_bytes(b"half")
    (tmp_path / ".tmp-ckpt-0000000004-77").mkdir()
    (tmp_path / ".tmp-ckpt-0000000004-77" / "model.safetensors").write_bytes(b"half")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".00000004.json.x1.tmp").write_bytes(b"{")
    keep = [tmp_path / "model.safetensors", tmp_path / "checkpoints" / "00000004.json"]
    for path in keep:
        path.write_bytes(b"ok")
    assert len(sweep_temporaries(tmp_path)) == 3
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "checkpoints/00000004.json", "model.safetensors"]
