"""Operator mistakes get one ``error:`` line that names the fix (no traceback).

Each case is one a new operator hit following the docs: a ws:// URL pointed at a devnet, a
stake on a subnet that does not exist or larger than the balance (shown in TAO), a miner
whose hotkey is not registered, a missing subnet config, a wallet created without a
terminal for its password, a CUDA device on a machine without one, and the plot hint of
``swarmtrain local``. The chain cases share one devnet process.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import torch

from chain.wallets import create_wallet
from swarmtrain.cli import main


@pytest.fixture(scope="module")
def devnet(tmp_path_factory):
    from chain.devnet.testing import run_devnet

    root = tmp_path_factory.mktemp("errors")
    with run_devnet(root / "devnet", block_time=0.2, tempo=10) as node:
        wallets = root / "wallets"
        for name in ("val", "stranger"):
            create_wallet(name, "default", wallets)
        args = ["--subtensor.network", node.url, "--wallet.path", str(wallets), "--wallet.hotkey", "default"]
        assert main(["register", "--netuid", "1", "--wallet.name", "val", *args]) == 0
        yield node, args


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_ws_url_pointed_at_a_devnet_says_use_devnet_scheme(devnet, capsys):
    node, _ = devnet
    ws = node.url.replace("devnet://", "ws://")
    assert main(["status", "--netuid", "1", "--subtensor.network", ws, "--timeout", "5"]) == 1
    line = _error(capsys)
    assert "is a swarmtrain devnet, not a subtensor node" in line and f"--subtensor.network {node.url}" in line


def test_stake_on_a_missing_subnet_says_the_subnet_does_not_exist(devnet, capsys):
    _, args = devnet
    assert main(["stake", "add", "--netuid", "5", "--amount", "10", "--wallet.name", "val", *args]) == 1
    line = _error(capsys)
    assert "subnet 5 does not exist" in line and "check --netuid" in line and "not registered" not in line


def test_stake_beyond_the_balance_is_refused_in_tao(devnet, capsys):
    _, args = devnet
    assert main(["stake", "add", "--netuid", "1", "--amount", "5000", "--wallet.name", "val", *args]) == 1
    line = _error(capsys)
    assert "holds τ" in line and "τ5000" in line and "--amount" in line and "rao" not in line
    assert main(["stake", "add", "--netuid", "1", "--amount", "2", "--wallet.name", "val", *args]) == 0
    assert "stake now τ2.0000" in capsys.readouterr().out


def test_an_unregistered_miner_is_told_to_register(devnet, capsys, tmp_path):
    _, args = devnet
    argv = ["miner", "--netuid", "1", "--wallet.name", "stranger", *args, "--device", "cpu", "--no-metrics",
            "--state", str(tmp_path / "m"), "--subnet-config", str(_config(tmp_path))]
    assert main(argv) == 1
    line = _error(capsys)
    assert "is not registered on netuid 1" in line and "swarmtrain register --netuid 1" in line


def _config(tmp_path: Path) -> Path:
    from tests.localnet_fixtures import tiny_subnet

    path = tmp_path / "subnet.json"
    tiny_subnet().save(path)
    return path


def test_a_missing_subnet_config_says_how_to_get_one(tmp_path, capsys):
    argv = ["miner", "--netuid", "1", "--subnet-config", str(tmp_path / "subnet.json"), "--no-metrics"]
    assert main(argv) == 1
    line = _error(capsys)
    assert "not found" in line and "swarmtrain subnet fetch --netuid 1" in line and "swarmtrain subnet init" in line


def test_an_invalid_subnet_config_names_the_field(tmp_path, capsys):
    path = tmp_path / "subnet.json"
    path.write_text('{"netuid": 1, "inner_steps": "many"}')
    assert main(["validator", "--netuid", "1", "--subnet-config", str(path)]) == 1
    line = _error(capsys)
    assert "inner_steps" in line and "swarmtrain subnet show" in line


def test_wallet_create_without_a_terminal_asks_for_no_password(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a TTY, nothing to read
    argv = ["wallet", "create", "--wallet.name", "w", "--wallet.path", str(tmp_path)]
    assert main(argv) == 1
    line = _error(capsys)
    assert "--no-password" in line and "terminal" in line
    assert not (tmp_path / "w").exists()
    assert main([*argv, "--no-password"]) == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_says_use_cpu(tmp_path, capsys):
    cfg = _config(tmp_path)
    assert main(["validator", "--netuid", "1", "--subnet-config", str(cfg), "--device", "cuda"]) == 1
    line = _error(capsys)
    assert "device 'cuda'" in line and "--device cpu" in line


def test_local_names_the_plot_extra():
    from rich.console import Console

    from swarmtrain.commands.local import print_files

    console = Console(file=io.StringIO(), width=200)
    print_files(console, Path("runs/summary.json"), None, Path("runs/logs"))  # no matplotlib: no plot
    assert "pip install 'swarmtrain[plot]'" in console.file.getvalue()
