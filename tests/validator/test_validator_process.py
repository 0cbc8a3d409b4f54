"""`swarmtrain validator` as a real process on a devnet: kill -9, restart, same certificate,
same model, same scores file, and the same checkpoint bytes served. ~40 s."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chain.client import Chain
from chain.devnet.testing import run_devnet
from chain.wallets import create_wallet
from node.logs import read_metrics
from node.signed_http import NodeHttpError, SignedClient
from node.validators import find_validators
from protocol.ports import free_port
from protocol.retry import Backoff, Waiter, retry
from protocol.subnet import SubnetConfig

NETUID = 1


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "swarmtrain", "validator", *args],
                                stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


async def _wait_windows(metrics: Path, count: int, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    waiter = Waiter(timeout, Backoff.every(0.3))
    while len(read_metrics(metrics)) < count:
        if proc.poll() is not None:
            raise AssertionError(f"validator exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        if not await waiter.pause():
            raise AssertionError(f"{count} windows not closed in {timeout}s:\n{log.read_text()[-3000:]}")


async def _get(wallet, endpoint, path: str, timeout: float = 20.0) -> bytes:
    async with SignedClient(wallet, timeout=5) as client:
        status, body = await retry(
            lambda: client.get(endpoint.url, path, receiver_hotkey=endpoint.hotkey,
                               pinned_fingerprint=endpoint.fingerprint),
            timeout=timeout, backoff=Backoff.every(0.3), retry_on=(NodeHttpError,),  # not listening yet
            again=lambda answer: answer[0] != 200,
        )
    assert status == 200, f"GET {path} did not answer 200 within {timeout}s"
    return body


@pytest.mark.timeout(180)
async def test_validator_killed_and_restarted(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = SubnetConfig(netuid=NETUID, preset="tiny", blocks_per_window=10, checkpoint_every=2, eval_samples=4)
    cfg.save(tmp_path / "subnet.json")
    wallets = tmp_path / "wallets"
    validator, reader = create_wallet("val", "default", wallets), create_wallet("reader", "default", wallets)
    state, log = tmp_path / "state", tmp_path / "validator.log"
    with run_devnet(tmp_path / "devnet", block_time=0.2, tempo=10) as net:
        async with await Chain.connect(net.url, timeout=20) as chain:
            await chain.register(validator, NETUID)
            await chain.add_stake(validator, NETUID, 100.0)
            args = ["--netuid", str(NETUID), "--subtensor.network", net.url, "--wallet.name", "val",
                    "--wallet.path", str(wallets), "--port", str(free_port()), "--subnet-config",
                    str(tmp_path / "subnet.json"), "--state", str(state)]
            proc = _start(args, log)
            try:
                await _wait_windows(state / "metrics.jsonl", 3, proc, log, timeout=90)
                endpoint = find_validators(await chain.metagraph(NETUID))[0]
                manifest = await _get(reader, endpoint, "/checkpoint/latest")
                window = int(manifest.split(b'"window":')[1].split(b",")[0])
                ckpt = await _get(reader, endpoint, f"/checkpoint/{window}")
                scores = json.loads((state / "scores.json").read_bytes())
                _stop(proc, signal.SIGKILL)
                proc = _start(args, log)
                after = find_validators(await chain.metagraph(NETUID))[0]
                assert after.fingerprint == endpoint.fingerprint  # same certificate after restart
                assert await _get(reader, after, f"/checkpoint/{window}") == ckpt
                await _get(reader, after, "/status")
                now = json.loads((state / "scores.json").read_bytes())
                assert now["last_window"] >= scores["last_window"] >= 0
                assert set(scores["scores"]) <= set(now["scores"])  # no record lost
            finally:
                _stop(proc)
