"""`swarmtrain local` supervises its children: a dead node is started again (counted), one that
keeps dying aborts the run, a held one stays down; an aborted run still writes its summary."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path

import pytest
from rich.console import Console

from node.s3_local import WRITE_KEY, LocalS3, moto_available
from node.storage import ObjectStore, StoreLocation
from protocol.retry import Backoff, Waiter
from protocol.subnet import SubnetConfig
from swarmtrain.commands.local import write_aborted
from swarmtrain.localnet import LocalNet, LocalNetConfig, LocalNetError, MinerSpec
from swarmtrain.localnet_report import build_summary

# A node that dies at once on its first two starts and then stays up (a file counts its starts).
FLAKY = ("import pathlib, sys, time; f = pathlib.Path(sys.argv[1]); n = len(f.read_text()) + 1 if f.exists() else 1; "
         "f.write_text('x' * n); sys.exit(3) if n <= 2 else time.sleep(30)")


def _net(tmp_path: Path, max_restarts: int = 5) -> LocalNet:
    cfg = LocalNetConfig(out=tmp_path / "out", miners=[MinerSpec("miner1")], windows=2, subnet=SubnetConfig(),
                         max_restarts=max_restarts)
    return LocalNet(cfg)


def _wait_dead(net: LocalNet, name: str) -> None:
    proc = net.processes[name].proc
    assert proc is not None
    proc.wait(timeout=20)


def test_a_dead_node_is_restarted_with_the_same_command_and_counted(tmp_path):
    with _net(tmp_path) as net:
        starts = tmp_path / "starts"
        proc = net.spawn("miner1", [sys.executable, "-c", FLAKY, str(starts)])
        for _ in range(2):
            _wait_dead(net, "miner1")
            net.supervise()
        assert net.processes["miner1"] is proc and proc.alive()
        assert net.restarts == {"miner1": 2} and [name for _, name, _ in net.restart_log] == ["miner1"] * 2
        assert [code for _, _, code in net.restart_log] == [3, 3]
        waiter = Waiter(20, Backoff.every(0.05))
        while starts.read_text() != "xxx":  # the third start is running; it writes its count first
            assert waiter.pause_sync() and proc.alive()
        net.held.add("miner1")  # a benchmark holding a node down: not restarted
        proc.kill9()
        net.supervise()
        assert not proc.alive() and net.restarts == {"miner1": 2}


def test_a_node_that_keeps_dying_aborts_with_its_log(tmp_path):
    with _net(tmp_path, max_restarts=1) as net:
        net.spawn("miner1", [sys.executable, "-c", "print('bad config'); raise SystemExit(2)"])
        _wait_dead(net, "miner1")
        net.supervise()
        _wait_dead(net, "miner1")
        with pytest.raises(LocalNetError, match="(?s)restarted 1 times .*bad config"):
            net.supervise()


@pytest.mark.skipif(not moto_available(), reason="needs moto[server] (the dev extra)")
def test_a_dead_s3_server_is_restarted_on_its_port_with_its_bucket(tmp_path):
    """The local S3 server is a supervised child: killed, it comes back on the same endpoint
    (the validators' commitments name it) with the bucket created again."""
    cfg = LocalNetConfig(out=tmp_path / "out", miners=[MinerSpec("miner1")], windows=2,
                         subnet=SubnetConfig(storage="s3"))
    with LocalNet(cfg) as net:
        proc = net.start_s3()
        endpoint = net.s3.endpoint
        proc.kill9()
        net.supervise()
        assert proc.alive() and net.restarts == {"s3": 1} and net.s3.endpoint == endpoint
        assert asyncio.run(_bucket_exists(net.s3))


async def _bucket_exists(s3: LocalS3) -> bool:
    store = ObjectStore(StoreLocation(endpoint=s3.endpoint, bucket=s3.bucket), key_id=WRITE_KEY[0],
                        secret=WRITE_KEY[1], timeout_s=10)
    try:
        await store.put("probe", b"x")  # NoSuchBucket (a StorageError) if it was not created again
        return await store.get("probe") == b"x"
    finally:
        await store.close()


def test_an_aborted_run_writes_what_it_has(tmp_path):
    net = _net(tmp_path)
    metrics = net.validator_metrics()
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"window": 0, "val_loss": 5.0, "model_hash": "a" * 64}) + "\n")
    net.restarts = {"miner1": 1}
    out = io.StringIO()
    write_aborted(net, KeyboardInterrupt("signal 15"), 3.0, Console(file=out))
    summary = json.loads((net.out / "summary.json").read_text())
    assert summary["aborted"] == "KeyboardInterrupt: signal 15" and summary["restarts"] == {"miner1": 1}
    assert summary["windows"][0]["window"] == 0 and summary["model_hash_agree"] is False
    assert "summary so far" in out.getvalue()


def test_the_summary_counts_restarts(tmp_path):
    net = _net(tmp_path)
    result = net.partial_result(1.0)
    result.restarts = {"validator": 2}
    assert build_summary(result)["restarts"] == {"validator": 2}
