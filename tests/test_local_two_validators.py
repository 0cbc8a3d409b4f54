"""Two validators on 127.0.0.1: devnet + lead + follower + 2 honest miners, as processes.

The lead (more stake) publishes every Aggregate(w); the follower scores the same
submissions, fetches and applies the lead's aggregate and must end each window with
the same model hash as the lead and the miners. Both set weights, so after a tempo
both earn dividends and both miners earn incentive. Slow-ish: about a minute on 2 cores.
"""

from __future__ import annotations

import re

import pytest

from node.logs import read_metrics
from swarmtrain.localnet import MinerSpec
from swarmtrain.localnet_report import build_summary
from tests.localnet_fixtures import running_localnet, tiny_subnet

WINDOWS = 2
RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) swarmtrain[.\w]*: \S")


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    with running_localnet(
        tmp_path_factory.mktemp("local2"), subnet=tiny_subnet(inner_steps=8, eval_samples=16),
        miners=[MinerSpec("miner1"), MinerSpec("miner2")], windows=WINDOWS, timeout_s=120, validators=2,
    ) as started:
        yield started


def _windows(records: list[dict]) -> dict[int, dict]:
    return {int(r["window"]): r for r in records if "window" in r}


def test_both_validators_accept_every_miners_submissions(network):
    net, result = network
    uid = result.uids
    validators = {uid["validator"], uid["validator2"]}
    for name in ("miner1", "miner2"):
        submitted = [r for r in result.miner_records[name] if r.get("submitted")]
        assert len(submitted) >= WINDOWS, f"{name} submitted only {len(submitted)} times"
        # every trained window reached both validators
        both = [r for r in submitted if set(r["accepted"]) >= validators]
        assert len(both) >= WINDOWS, [(r["window"], r["accepted"], r.get("refused")) for r in submitted]
    lead, follower = _windows(result.validator_records), _windows(result.other_validators["validator2"])
    for w in range(result.first_window, result.first_window + WINDOWS):
        for records in (lead, follower):
            assert {uid["miner1"], uid["miner2"]} <= set(records[w]["submissions"]), records[w]


def test_follower_applies_the_leads_aggregates(network):
    net, result = network
    summary = build_summary(result)
    assert summary["model_hash_agree"] is True, summary["windows"]
    lead, follower = _windows(result.validator_records), _windows(result.other_validators["validator2"])
    for row in summary["windows"]:
        w = row["window"]
        assert row["validator_hashes"] == {"validator2": row["model_hash"]}
        assert follower[w]["contributors"] == lead[w]["contributors"]  # the lead's aggregate, not its own
        assert follower[w]["model_hash"] == lead[w]["model_hash"]
    # the follower stored the lead's exact bytes; it built none of its own
    follower_state = net.state_dir("validator2") / "aggregates"
    lead_state = net.state_dir("validator") / "aggregates"
    for w in range(result.first_window, result.first_window + WINDOWS):
        name = f"{w:08d}.bin"
        assert (follower_state / name).read_bytes() == (lead_state / name).read_bytes()
    for name in ("validator", "validator2"):
        log_text = net.processes[name].log_path.read_text(errors="replace")
        assert "set weights block=" in log_text, f"{name} never set weights"


def test_node_logs_hold_one_record_per_line_with_uid_next_to_hotkey(network):
    """The nodes log to files: one plain record per line (no wrapping), hotkeys with their uids."""
    net, result = network
    for name in ("validator", "validator2", "miner1", "miner2"):
        lines = [line for line in net.processes[name].log_path.read_text().splitlines()
                 if line and not line.startswith("=== start")]
        assert lines and all(RECORD.match(line) for line in lines), [ln for ln in lines if not RECORD.match(ln)]
        for line in lines:  # each hotkey=... right after the field holding its uid
            before = re.findall(r"(\w+)=\S+ (?:lead_)?hotkey=", line)
            assert len(before) == line.count("hotkey=") and set(before) <= {"uid", "validator", "lead"}, line
        assert any(re.search(r"\buid=\d+ hotkey=5", line) for line in lines), name


def test_both_validators_earn_dividends_and_both_miners_incentive(network):
    net, result = network
    summary = build_summary(result)
    uid = result.uids
    assert summary["validator_uids"] == sorted([uid["validator"], uid["validator2"]])
    neurons = {n["uid"]: n for n in result.metagraph["neurons"]}
    assert neurons[uid["validator"]]["stake"] > neurons[uid["validator2"]]["stake"] > 0
    for name in ("validator", "validator2"):
        assert summary["dividends"][uid[name]] > 0, summary["dividends"]
    for name in ("miner1", "miner2"):
        assert summary["incentive"][uid[name]] > 0, summary["incentive"]
        assert summary["emission"][uid[name]] > 0, summary["emission"]
    assert set(summary["emission"]) == {uid[n] for n in ("validator", "validator2", "miner1", "miner2")}
    # the lead's metrics carry the per-window rows; the follower wrote its own
    assert read_metrics(net.validator_metrics("validator2"))


def test_each_dashboard_and_status_compare_the_other_validators_model_hash(network, capsys):
    """The follower's dashboard reads the lead's /status (in the background, once asked) and
    finds the same model; ``swarmtrain status`` compares both validators and both miners."""
    import json
    import ssl
    import urllib.request

    from protocol.retry import Backoff, Waiter
    from swarmtrain.cli import main

    net, result = network
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    url = net.dashboard_url("validator2") + "/data"
    waiter = Waiter(20, Backoff.every(0.5))
    while True:
        with urllib.request.urlopen(url, timeout=10, context=context) as resp:
            rows = {v["uid"]: v for v in json.loads(resp.read())["validators"]}
        lead = rows.get(result.uids["validator"])
        if lead is not None and lead["agrees"] is not None:
            break
        assert waiter.pause_sync(), rows
    assert lead["agrees"] is True and rows[result.uids["validator2"]]["self"], rows
    assert main(["status", "--netuid", "1", "--subtensor.network", net.url, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [v["uid"] for v in doc["validators"]] == [result.uids["validator"], result.uids["validator2"]]
    assert all(v["status"] for v in doc["validators"]), doc["validators"]
    assert doc["agreement"]["miners"] == {str(result.uids["miner1"]): True, str(result.uids["miner2"]): True}
