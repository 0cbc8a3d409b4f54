"""End to end on 127.0.0.1: devnet + 1 validator + 2 honest miners + 1 garbage miner, as processes.

One network serves both tests in this module (starting it costs most of the time):
the honest nodes agree on every model hash, validation loss falls, honest miners
earn emission and the garbage miner is refused with reasons and earns nothing;
then a miner killed with SIGKILL mid-window restarts and rejoins with the
network's model hash. Slow-ish: about a minute or two on 2 cores.
"""

from __future__ import annotations

import asyncio
import json
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


def test_dashboard_renders_loss_chart_and_every_miner_row_in_a_browser(network, tmp_path):
    """A real headless Chromium opens the lead validator's dashboard while the network runs."""
    from tests.headless import Chromium, find_chromium

    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    net, result = network
    miners = sorted(result.uids[m.name] for m in net.cfg.miners)
    facts = (
        "({points: document.querySelectorAll('#loss-chart circle').length,"
        " line: document.getElementById('loss-line').getAttribute('points'),"
        " rows: Array.from(document.querySelectorAll('#miners tbody tr')).map(r => Number(r.dataset.uid)),"
        " reasons: Array.from(document.querySelectorAll('#miners tbody tr')).map(r => r.cells[4].textContent),"
        " validators: document.querySelectorAll('#validators tbody tr').length,"
        " refusals: Array.from(document.querySelectorAll('#refusals tbody tr')).map(r => r.dataset.code),"
        " windows: document.querySelectorAll('#windows tbody tr').length})"
    )
    ready = f"document.body !== null && document.body.dataset.loaded === '1' && document.querySelectorAll('#miners tbody tr').length >= {len(miners)}"
    with Chromium(binary, tmp_path) as browser:
        seen = asyncio.run(browser.read(net.dashboard_url(), facts, until=ready, timeout=45))
    assert seen["points"] >= WINDOWS and len(seen["line"].split()) == seen["points"], seen
    assert sorted(seen["rows"]) == miners, seen
    assert any(r not in ("-", "") for r in seen["reasons"]), seen  # verdict reasons are shown
    assert seen["validators"] == 1 and seen["windows"] >= WINDOWS
    assert "invalid_payload" in seen["refusals"] or "malformed" in seen["refusals"], seen  # the garbage miner


def _scrape(url: str) -> dict[str, list]:
    """GET a Prometheus endpoint (the validator's certificate is self-signed) and parse it."""
    import ssl
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with urllib.request.urlopen(url, timeout=10, context=context) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_metrics_of_a_running_validator_and_miner(network):
    net, result = network
    v = _scrape(net.metrics_url("validator"))
    assert v["swarmtrain_validator_windows_closed"][0].value >= WINDOWS
    outcomes = {s.labels["outcome"]: s.value for s in v["swarmtrain_validator_submissions"] if s.name.endswith("_total")}
    assert outcomes["accepted"] >= 2 * WINDOWS and set(outcomes) - {"accepted"}, outcomes  # and the junk refusals
    assert any(s.name.endswith("_count") and s.value >= 1 for s in v["swarmtrain_validator_evaluation_seconds"])
    assert {s.labels["uid"] for s in v["swarmtrain_validator_miner_ema"]} >= {str(result.uids["miner1"])}
    for name in ("swarmtrain_validator_received_bytes", "swarmtrain_validator_sent_bytes"):
        assert v[name][0].value > 0, name
    assert v["swarmtrain_validator_model_hash_age_seconds"][0].value >= 0
    m = _scrape(net.metrics_url("miner2"))
    assert sum(s.value for s in m["swarmtrain_miner_windows"] if s.name.endswith("_total")) >= WINDOWS
    assert any(s.labels.get("outcome") == "accepted" for s in m["swarmtrain_miner_submissions"])
    assert m["swarmtrain_miner_sent_bytes"][0].value > 0 and m["swarmtrain_miner_received_bytes"][0].value > 0
    assert m["swarmtrain_miner_model_hash_age_seconds"][0].value >= 0


def test_status_shows_per_miner_scores_and_hash_agreement(network, capsys):
    from swarmtrain.cli import main

    net, result = network
    assert main(["status", "--netuid", "1", "--subtensor.network", net.url, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    [lead] = doc["validators"]
    rows = {m["uid"]: m for m in lead["status"]["miners"]}
    for name in ("miner1", "miner2"):
        assert rows[result.uids[name]]["ema"] > 0 and rows[result.uids[name]]["last_submission"]["hash_agrees"]
    assert doc["agreement"]["validators"] == {str(lead["uid"]): True} or doc["agreement"]["validators"] == {lead["uid"]: True}
    assert main(["status", "--netuid", "1", "--subtensor.network", net.url, "--watch", "0.2", "--count", "2"]) == 0
    out = capsys.readouterr().out
    assert "miners (scores as each validator sees them)" in out and "model hashes at window" in out


def test_subnet_fetch_downloads_the_lead_validators_config(network, tmp_path, capsys):
    from protocol.subnet import SubnetConfig
    from swarmtrain.cli import main

    net, _ = network
    out = tmp_path / "fetched.json"
    assert main(["subnet", "fetch", "--netuid", "1", "--subtensor.network", net.url, "--out", str(out)]) == 0
    assert SubnetConfig.load(out) == net.cfg.subnet
    assert "matches its commitment on chain" in capsys.readouterr().out


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
