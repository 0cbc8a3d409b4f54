"""`swarmtrain local` killed with SIGKILL leaves no process behind (Linux: PR_SET_PDEATHSIG).

Starts the command as a subprocess, waits until its devnet, validator and miner children
run, kills the parent with -9 and asserts every child exits within a bounded wait.
About 20-40 s on 2 cores (most of it the network's start-up).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.retry import Backoff, Waiter
from tests.procs import alive, children_of

ROOT = Path(__file__).resolve().parents[1]
CACHE = os.environ.get("SWARMTRAIN_CACHE") or str(Path.home() / ".cache" / "swarmtrain")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; prctl is Linux-only")


def _wait_for_children(proc: subprocess.Popen, kinds: tuple[str, ...], timeout: float) -> dict[int, str]:
    waiter = Waiter(timeout, Backoff.every(0.2))
    while True:
        assert proc.poll() is None, f"swarmtrain local exited early with {proc.returncode}"
        kids = children_of(proc.pid)
        if all(any(f"swarmtrain {kind}" in cmd for cmd in kids.values()) for kind in kinds):
            return kids
        if not waiter.pause_sync():
            break
    pytest.fail(f"children {kinds} did not all start within {timeout}s: {children_of(proc.pid)}")


def test_children_die_with_a_killed_parent(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path / "home"), SWARMTRAIN_CACHE=CACHE, PYTHONPATH=str(ROOT))
    argv = [
        sys.executable, "-m", "swarmtrain", "local", "--out", str(tmp_path / "out"), "--miners", "1",
        "--windows", "50", "--block-time", "0.5", "--tempo", "10", "--timeout", "120",
    ]
    with open(tmp_path / "local.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    kids: dict[int, str] = {}
    try:
        kids = _wait_for_children(proc, ("devnet", "validator", "miner"), timeout=120)
        assert len(kids) == 3, kids
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        waiter = Waiter(30, Backoff.every(0.2))
        while any(alive(pid) for pid in kids) and waiter.pause_sync():
            pass
        left = {pid: cmd for pid, cmd in kids.items() if alive(pid)}
        assert not left, f"orphans outlived the killed parent: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for pid in kids:  # only the pids this test saw started
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_new_run_starts_from_a_clean_out_directory(tmp_path) -> None:
    """A second `swarmtrain local` into the same folder must not resume the first run's
    chain or node state (it would report the old windows as done at once)."""
    from protocol.subnet import SubnetConfig
    from swarmtrain.localnet import RUN_OUTPUTS, LocalNet, LocalNetConfig, MinerSpec

    for name in ("devnet", "state", "logs", "wallets"):
        (tmp_path / name / "x").mkdir(parents=True)
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    cfg = LocalNetConfig(out=tmp_path, miners=[MinerSpec("miner1")], windows=1, subnet=SubnetConfig())
    LocalNet(cfg).clear_previous_run()
    assert not any((tmp_path / n).exists() for n in RUN_OUTPUTS)
    assert (tmp_path / "notes.txt").read_text() == "mine"  # only what a run writes is removed
