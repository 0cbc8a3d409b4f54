"""`swarmtrain local` reporting (summary, table, plot) and scripts/run_local.sh, without a network."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from protocol.retry import Backoff, Waiter
from protocol.subnet import SubnetConfig
from swarmtrain.localnet import LocalNetConfig, LocalRunResult, ManagedProcess, MinerSpec
from swarmtrain.localnet_report import build_summary, plot, render, write_summary
from tests.procs import live_processes

ROOT = Path(__file__).resolve().parents[1]
H = ["a" * 64, "b" * 64, "c" * 64]


def _result(tmp_path: Path, bad_hash: bool = False) -> LocalRunResult:
    cfg = LocalNetConfig(out=tmp_path, miners=[MinerSpec("miner1"), MinerSpec("miner2"), MinerSpec("junk", honest=False)],
                         windows=3, subnet=SubnetConfig())
    validator = [{"window": 4, "val_loss": 5.0, "model_hash": "0" * 64}]  # before the miners trained
    validator += [
        {"window": 5 + i, "val_loss_before": 5.0 - i, "val_loss": 4.5 - i, "contributors": [1, 2],
         "scores": {"1": 0.1, "2": 0.2, "3": 0.0}, "model_hash": H[i]}
        for i in range(3)
    ]
    miner = lambda hashes: [{"event": "window", "window": 5 + i, "model_hash": h} for i, h in enumerate(hashes)]  # noqa: E731
    miners = {"miner1": miner(H), "miner2": miner(H[:2] + (["f" * 64] if bad_hash else H[2:])), "junk": miner(["e" * 64] * 3)}
    miners["junk"][1]["refused"] = [{"validator": 0, "status": 422, "code": "invalid_payload", "reason": "NaN"}]
    neurons = [{"uid": u, "emission": e, "incentive": i, "dividends": d}
               for u, e, i, d in ((0, 0.5, 0.0, 1.0), (1, 0.2, 0.4, 0.0), (2, 0.3, 0.6, 0.0), (3, 0.0, 0.0, 0.0))]
    return LocalRunResult(cfg=cfg, uids={"validator": 0, "miner1": 1, "miner2": 2, "junk": 3},
                          validator_records=validator, miner_records=miners,
                          metagraph={"block": 99, "neurons": neurons}, first_window=5, seconds=12.0)


def test_summary_has_losses_emission_and_hash_agreement(tmp_path):
    summary = build_summary(_result(tmp_path))
    assert summary["val_loss"] == [4.5, 3.5, 2.5]
    assert summary["val_loss_initial"] == 5.0
    assert abs(summary["val_loss_drop"] - (4.5 - 2.5) / 4.5) < 1e-9
    assert summary["emission"] == {0: 0.5, 1: 0.2, 2: 0.3, 3: 0.0}
    assert summary["model_hash_agree"] is True  # the dishonest miner's hashes do not count
    assert summary["honest_miners"] == [1, 2]
    assert [r["contributors"] for r in summary["windows"]] == [[1, 2]] * 3
    back = json.loads(write_summary(summary, tmp_path / "summary.json").read_text())
    assert back["emission"]["1"] == 0.2 and back["model_hash_agree"] is True


def test_one_disagreeing_honest_miner_makes_agreement_false(tmp_path):
    summary = build_summary(_result(tmp_path, bad_hash=True))
    assert summary["model_hash_agree"] is False
    assert [r["hash_agree"] for r in summary["windows"]] == [True, True, False]


def test_table_and_plot(tmp_path):
    summary = build_summary(_result(tmp_path))
    console = Console(record=True, width=160)
    render(summary, console)
    text = console.export_text()
    assert "miner1 (uid 1)" in text and "2.5000" in text and "model hashes agree: True" in text
    assert "422 invalid_payload" in text  # the garbage miner's refusal in window 6
    png = plot(summary, tmp_path / "local.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_managed_process_stop_escalates_to_kill(tmp_path):
    # A child that ignores SIGTERM is killed after the grace period; its output is in the log.
    code = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('READY' + '!', flush=True); time.sleep(60)"
    proc = ManagedProcess("stubborn", ["python3", "-c", code], tmp_path / "stubborn.log", dict(os.environ)).start()
    for _ in range(100):
        if "READY!" in proc.tail():  # not in the argv line the log starts with
            break
        subprocess.run(["sleep", "0.05"], check=True)
    proc.stop(grace_s=0.5)
    assert not proc.alive() and proc.proc.returncode == -9
    assert "READY!" in proc.tail()


def test_run_local_script_passes_flags_and_environment(tmp_path):
    # A stand-in virtualenv whose `swarmtrain` prints its arguments and the output variable.
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to("/bin/true")
    (venv / "bin" / "activate").write_text(f'export PATH="{venv}/bin:$PATH"\n')
    (venv / "bin" / "swarmtrain").write_text('#!/bin/sh\necho "ARGS $*"\necho "OUT $SWARMTRAIN_LOCAL_OUT"\n')
    (venv / "bin" / "swarmtrain").chmod(0o755)
    (venv / ".swarmtrain-installed").touch()
    os.utime(venv / ".swarmtrain-installed", (2**31, 2**31))  # newer than setup.py
    env = {**os.environ, "SWARMTRAIN_VENV": str(venv), "SWARMTRAIN_LOCAL_OUT": str(tmp_path / "out")}
    out = subprocess.run(["bash", str(ROOT / "scripts" / "run_local.sh"), "--windows", "2"],
                         capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "ARGS local --windows 2" in lines  # the defaults live in LocalSettings, not the script
    assert f"OUT {tmp_path / 'out'}" in lines  # read by `swarmtrain local` itself (--out)


def _pids_mentioning(text: str) -> list[int]:
    """Running processes whose command line contains ``text``."""
    return [pid for pid, cmd in live_processes().items() if text in cmd]


def test_swarmtrain_local_stops_every_process_on_sigterm(tmp_path):
    # Slow-ish (~15 s): starts the real devnet, a validator and a miner, then interrupts.
    out = tmp_path / "out"
    cache = os.environ.get("SWARMTRAIN_CACHE") or str(Path.home() / ".cache" / "swarmtrain")
    env = {**os.environ, "HOME": str(tmp_path / "home"), "SWARMTRAIN_CACHE": cache}
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarmtrain", "local", "--miners", "1", "--windows", "100", "--out", str(out),
         "--block-time", "0.3"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        waiter = Waiter(90, Backoff.every(0.2))
        while not (out / "logs" / "miner1.log").exists():
            assert proc.poll() is None, "swarmtrain local exited early"
            assert waiter.pause_sync(), "the miner was never started"
        children = _pids_mentioning(str(out))
        assert len(children) >= 3  # devnet, validator, miner
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert _pids_mentioning(str(out)) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for pid in _pids_mentioning(str(out)):  # never leave a stray child behind
            os.kill(pid, signal.SIGKILL)
