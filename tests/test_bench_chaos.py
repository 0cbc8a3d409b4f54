"""bench_chaos's counts on hand-written node records: each count can fail, and the plan is seeded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from protocol.subnet import SubnetConfig
from swarmtrain.localnet import LocalNet, LocalNetConfig, LocalRunResult, default_miners

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.fixture(scope="module")
def chaos():
    sys.path.insert(0, str(SCRIPTS))
    try:
        import bench_chaos

        yield bench_chaos
    finally:
        sys.path.remove(str(SCRIPTS))


def _write(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _network(tmp_path: Path, *, lose: bool = False, twice: bool = False, fork: bool = False):
    cfg = LocalNetConfig(out=tmp_path, miners=default_miners(2), windows=3, subnet=SubnetConfig())
    net = LocalNet(cfg)
    uids = {"validator": 0, "miner1": 1, "miner2": 2}
    lead = [{"window": w, "model_hash": f"h{w}", "submissions": [1, 2]} for w in (4, 5, 6)]
    if twice:
        lead.append({"window": 5, "model_hash": "h5", "submissions": [2]})  # closed again, uid 2 again
    if lose:
        lead[1]["submissions"] = [2]  # miner1's accepted submission for window 5 never evaluated
    _write(net.validator_metrics(), lead)
    for w in (4, 5, 6):
        (net.state_dir("validator") / "aggregates").mkdir(parents=True, exist_ok=True)
        (net.state_dir("validator") / "aggregates" / f"{w:08d}.bin").write_bytes(b"x")
    for name in ("miner1", "miner2"):
        hashes = {4: "h4", 5: "h5", 6: "forked" if fork and name == "miner2" else "h6"}
        _write(net.miner_metrics(name), [{"event": "window", "window": w, "model_hash": h, "accepted": [0],
                                          "trained": True} for w, h in hashes.items()])
    result = LocalRunResult(cfg=cfg, uids=uids, validator_records=lead, miner_records={
        n: [json.loads(line) for line in net.miner_metrics(n).read_text().splitlines()] for n in ("miner1", "miner2")},
        metagraph={}, first_window=4, seconds=1.0)
    return net, result


def test_a_clean_run_counts_nothing(chaos, tmp_path):
    net, result = _network(tmp_path)
    assert chaos.counts(net, result) == {"windows_lost": 0, "submissions_lost": 0, "double_counted": 0,
                                         "hash_agree": True, "lost_windows": []}


def test_each_count_sees_its_fault(chaos, tmp_path):
    assert chaos.counts(*_network(tmp_path / "a", lose=True))["submissions_lost"] == 1
    assert chaos.counts(*_network(tmp_path / "b", twice=True))["double_counted"] == 1
    assert chaos.counts(*_network(tmp_path / "c", fork=True))["hash_agree"] is False
    net, result = _network(tmp_path / "d")
    (net.state_dir("validator") / "aggregates" / "00000005.bin").unlink()
    assert chaos.counts(net, result)["lost_windows"] == [5]


def test_the_fault_plan_is_seeded_and_spaced(chaos, tmp_path):
    args = chaos.parse_args(["--quick", "--out", str(tmp_path)])
    cfg = chaos.network_config(args)
    plan = chaos.plan_faults(args, cfg)
    assert plan == chaos.plan_faults(args, cfg) and len(plan) == 6
    assert all(b.at_s - a.at_s >= 0.6 * 15 for a, b in zip(plan, plan[1:], strict=False))
    assert {f.target for f in plan} <= {"devnet", "validator", "miner1", "miner2", "miner3"}
    outage = chaos.plan_faults(chaos.parse_args(["--quick", "--outage-s", "300"]), cfg)
    assert [(f.target, f.down_s) for f in outage] == [("devnet", 300.0)]
