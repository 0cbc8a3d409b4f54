"""End to end on 127.0.0.1: devnet + 1 validator + 2 honest miners + 1 garbage miner, as processes.

One network serves both tests in this module (starting it costs most of the time):
the honest nodes agree on every model hash, validation loss falls, honest miners
earn emission and the garbage miner is refused with reasons and earns nothing;
then a miner killed with SIGKILL mid-window restarts and rejoins with the
network's model hash. Slow-ish: about a minute or two on 2 cores.
"""

from __future__ import annotations

import sys
import time

import pytest

from node.logs import read_metrics
from protocol.retry import Backoff, Waiter
from swarmtrain.localnet import LocalNet, MinerSpec
from swarmtrain.localnet_report import build_summary
from tests.localnet_fixtures import running_localnet, tiny_subnet

WINDOWS = 3
GARBAGE = MinerSpec("junk", honest=False, entry=(sys.executable, "-m", "tests.miner.garbage_miner"))


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    with running_localnet(
        tmp_path_factory.mktemp("local"), subnet=tiny_subnet(inner_steps=10, eval_samples=32),
        miners=[MinerSpec("miner1"), MinerSpec("miner2"), GARBAGE], windows=WINDOWS, timeout_s=150,
    ) as started:
        yield started


def test_network_trains_agrees_and_pays_honest_miners(network):
    net, result = network
    summary = build_summary(result)
    uid = result.uids
    assert summary["model_hash_agree"] is True, summary["windows"]
    losses = summary["val_loss"]
    assert len(losses) == WINDOWS
    assert losses[-1] < summary["val_loss_initial"], losses
    assert losses[-1] < losses[0], losses
    for row in summary["windows"]:
        assert uid["junk"] not in row["contributors"]
        assert row["scores"].get(uid["junk"], 0.0) == 0.0
    contributed = {u for row in summary["windows"] for u in row["contributors"]}
    assert {uid["miner1"], uid["miner2"]} <= contributed
    emission = summary["emission"]
    assert emission[uid["miner1"]] > 0 and emission[uid["miner2"]] > 0, emission
    assert emission[uid["junk"]] == 0.0
    assert summary["incentive"][uid["miner1"]] > 0  # the validator's weights reached consensus
    # The garbage miner heard why: every submission refused with a 4xx and a reason.
    junk = [r for r in result.miner_records["junk"] if r.get("submitted")]
    assert junk, "the garbage miner never submitted"
    for record in junk:
        assert record["accepted"] == []
        assert record["refused"] and all(400 <= r["status"] < 500 and r["reason"] for r in record["refused"])


def _validator_hashes(net: LocalNet) -> dict[int, str]:
    return {int(r["window"]): r["model_hash"] for r in read_metrics(net.validator_metrics()) if "model_hash" in r}


def _last_window(net: LocalNet, name: str) -> int:
    return max((r["window"] for r in read_metrics(net.miner_metrics(name)) if "window" in r), default=-1)


def test_miner_killed_mid_window_rejoins_with_the_network_hash(network):
    net, result = network
    spec = net.cfg.miners[0]
    # Just after it finished (and checkpointed) a window it is training the next one: kill it then.
    before = _last_window(net, spec.name)
    waiter = Waiter(30, Backoff.every(0.05))
    while _last_window(net, spec.name) == before:
        assert waiter.pause_sync(), "the miner stopped finishing windows"
    killed_at = _last_window(net, spec.name)
    time.sleep(0.3)
    net.processes[spec.name].kill9()
    net.start_miner(spec)
    waiter = Waiter(90, Backoff.every(0.5))
    while waiter.pause_sync():
        net.check_alive()
        after = [r for r in read_metrics(net.miner_metrics(spec.name))
                 if r.get("window", -1) > killed_at and r.get("trained")]
        hashes = _validator_hashes(net)
        agreed = [r for r in after if hashes.get(r["window"]) == r["model_hash"]]
        if agreed:
            return
        disagreed = [r for r in after if r["window"] in hashes and hashes[r["window"]] != r["model_hash"]]
        assert not disagreed, f"restarted miner diverged: {disagreed}"
    pytest.fail(f"restarted miner did not finish a window in time; log:\n{net.processes[spec.name].tail(30)}")
