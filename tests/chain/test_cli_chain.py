"""The chain CLI: argument parsing, JSON shape, one-line errors, and the issue's Done-when scenario.

The scenario test (``test_done_when_scenario``) starts a real devnet subprocess and
drives ``python -m swarmtrain`` as a user would; it takes ~15-25 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chain.types import Metagraph, SubnetHyperparams
from swarmtrain.cli import build_parser, discover_commands, main
from swarmtrain.commands._chainargs import network_of, subtensor_of, wallet_of
from swarmtrain.commands.status import print_table, status_document

REPO = Path(__file__).resolve().parents[2]


def _parse(argv: list[str]):
    return build_parser(discover_commands()).parse_args(argv)


def test_register_flags_follow_bittensor_conventions():
    args = _parse(
        [
            "register",
            "--netuid",
            "1",
            "--subtensor.network",
            "devnet://127.0.0.1:1234",
            "--wallet.name",
            "m1",
            "--wallet.hotkey",
            "hk",
            "--wallet.path",
            "/tmp/w",
            "--pow",
            "--no-prompt",
        ]
    )
    wallet, subtensor = wallet_of(args), subtensor_of(args)
    assert (args.netuid, subtensor.network, wallet.name, wallet.hotkey) == (
        1,
        "devnet://127.0.0.1:1234",
        "m1",
        "hk",
    )
    assert wallet.directory == Path("/tmp/w") and args.pow and args.no_prompt and subtensor.timeout_s == 30.0


def test_defaults_and_endpoint_override():
    args = _parse(["status", "--netuid", "3"])
    assert subtensor_of(args).network == "devnet" and not args.json and network_of(args) == "devnet"
    args = _parse(["status", "--netuid", "3", "--subtensor.chain_endpoint", "ws://h:1", "--json"])
    assert network_of(args) == "ws://h:1" and args.json


def test_stake_and_wallet_subcommands_parse():
    args = _parse(["stake", "add", "--netuid", "1", "--amount", "2.5", "--wallet.name", "v"])
    assert (args.stake_action, args.amount, wallet_of(args).name) == ("add", 2.5, "v")
    args = _parse(["wallet", "create", "--wallet.name", "a", "--no-password", "--overwrite"])
    assert (args.wallet_action, args.no_password, args.overwrite) == ("create", True, True)


def test_netuid_is_required():
    with pytest.raises(SystemExit):
        _parse(["register", "--wallet.name", "a"])


def _status_doc() -> dict:
    mg = Metagraph(
        netuid=1,
        block=9,
        uids=[0, 1],
        hotkeys=["h0", "h1"],
        coldkeys=["c0", "c1"],
        stake=[3.0, 0.0],
        validator_permit=[True, False],
        axons=[None, "1.2.3.4:5"],
        last_update=[1, 2],
        incentive=[0.0, 1.0],
        dividends=[1.0, 0.0],
        emission=[0.5, 0.5],
        consensus=[0.0, 1.0],
        commitments={},
    )
    hp = SubnetHyperparams(
        netuid=1,
        tempo=10,
        weights_rate_limit=0,
        commit_reveal_enabled=False,
        min_allowed_weights=0,
        max_weights_limit=65535,
        activity_cutoff=5000,
        immunity_period=0,
        max_allowed_uids=256,
        max_allowed_validators=64,
        burn=1.0,
    )
    return json.loads(json.dumps(status_document("devnet", mg, hp)))


def test_status_document_shape():
    doc = _status_doc()
    assert (doc["netuid"], doc["block"], doc["network"]) == (1, 9, "devnet")
    assert doc["hyperparameters"]["burn"] == 1.0
    assert [n["uid"] for n in doc["neurons"]] == [0, 1]
    assert doc["neurons"][1]["axon"] == "1.2.3.4:5" and doc["neurons"][0]["validator_permit"]


def test_status_table_shows_chain_text_inert(capsys):
    """A commitment is anyone's text: printed without rich markup and with escapes written out."""
    doc = _status_doc()
    doc["neurons"][1]["commitment"] = "[bold red]x\x1b]0;pwn\x07"
    print_table(doc)
    out = capsys.readouterr().out
    assert "[bold red]x\\x1b]0;pwn" in out and "\x1b]0" not in out and "\x07" not in out


def test_wallet_create_prints_addresses_and_refuses_overwrite(tmp_path, capsys):
    argv = [
        "wallet",
        "create",
        "--wallet.name",
        "a",
        "--wallet.hotkey",
        "h",
        "--wallet.path",
        str(tmp_path),
        "--no-password",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count(" 5") >= 2  # coldkey and hotkey ss58 addresses
    assert main(argv) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0


def test_missing_wallet_is_one_line_error(tmp_path, capsys):
    code = main(
        ["register", "--netuid", "1", "--wallet.name", "ghost", "--wallet.path", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: wallet ghost/default not found")
    assert len(err.strip().splitlines()) == 1


def _cli(args: list[str], home: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "swarmtrain", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_no_devnet_running_is_a_clear_one_line_error(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"devnet://127.0.0.1:{port}"
    out = _cli(["status", "--netuid", "1", "--subtensor.network", url, "--timeout", "5"], tmp_path)
    assert out.returncode == 1
    assert f"no devnet at {url}" in out.stderr and "swarmtrain devnet" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_done_when_scenario(tmp_path):
    """Start a devnet, create two wallets, register both, status lists both; kill -9 +
    restart the devnet; status still lists both (slow: ~20 s)."""
    from chain.devnet.testing import run_devnet

    home = tmp_path / "home"
    names = ("alice", "bob")
    with run_devnet(tmp_path / "devnet", block_time=0.2, tempo=10) as node:
        net = ["--subtensor.network", node.url]
        hotkeys = {}
        for name in names:
            out = _cli(
                [
                    "wallet",
                    "create",
                    "--wallet.name",
                    name,
                    "--wallet.hotkey",
                    "default",
                    "--no-password",
                ],
                home,
            )
            assert out.returncode == 0, out.stderr
            hotkeys[name] = out.stdout.split("hotkey")[-1].split()[0]
        for name in names:
            out = _cli(
                [
                    "register",
                    "--netuid",
                    "1",
                    *net,
                    "--wallet.name",
                    name,
                    "--wallet.hotkey",
                    "default",
                ],
                home,
            )
            assert out.returncode == 0, out.stderr
            assert f"registered {hotkeys[name]} on netuid 1 as uid" in out.stdout

        def listed() -> dict[str, int]:
            out = _cli(["status", "--netuid", "1", *net, "--json"], home)
            assert out.returncode == 0, out.stderr
            doc = json.loads(out.stdout)
            assert doc["netuid"] == 1 and doc["block"] > 0
            return {n["hotkey"]: n["uid"] for n in doc["neurons"]}

        before = listed()
        assert set(hotkeys.values()) <= set(before)
        node.kill9()
        node.restart()
        after = listed()
        assert {h: after[h] for h in hotkeys.values()} == {h: before[h] for h in hotkeys.values()}
