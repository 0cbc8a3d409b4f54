"""Settings → flags, env vars and TOML: every field of every settings model can be set, the
value reaches the model, and the defaults live in the model only (argparse holds none)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from annotated_types import Ge, Gt, Le
from pydantic import SecretStr

from chain.devnet import cli as devnet_cli
from chain.devnet.params import DevnetConfig
from miner.settings import MinerOptions, MinerSettings
from protocol.flags import (
    CONFIG_DEST,
    FlagSpec,
    SettingsError,
    _value_type,
    flag_specs,
    load_settings,
)
from protocol.subnet import SubnetConfig
from swarmtrain.cli import build_parser, discover_commands
from swarmtrain.commands import local as local_command
from swarmtrain.commands import miner as miner_command
from swarmtrain.commands import validator as validator_command
from swarmtrain.local_settings import LocalSettings
from swarmtrain.localnet import LocalNet, LocalNetConfig, MinerSpec
from validator.settings import ValidatorSettings

NETUID = ["--netuid", "7"]
# command, its settings model, flags every parse needs, settings from parsed args
COMMANDS: list[tuple[str, Any, list[str], Any]] = [
    ("validator", ValidatorSettings, NETUID, lambda a: validator_command.settings_from(a, environ={})),
    ("miner", MinerSettings, NETUID, lambda a: miner_command.settings_from(a, environ={})),
    ("local", LocalSettings, [], lambda a: local_command.settings_from(a, environ={})),
    ("devnet", DevnetConfig, [], devnet_cli.config_from),
]


ENV_PREFIXES = {"validator": validator_command.ENV_PREFIX, "miner": miner_command.ENV_PREFIX,
                "local": local_command.ENV_PREFIX}


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser(discover_commands()).parse_args(argv)


def _bound(spec: FlagSpec, kind: type) -> tuple[Any, Any]:
    low = high = None
    for item in spec.field.metadata:
        if isinstance(item, Ge | Gt):
            low = item.ge if isinstance(item, Ge) else item.gt
        if isinstance(item, Le):
            high = item.le
    return low, high


def sample(spec: FlagSpec) -> tuple[list[str], Any]:
    """Argv giving the flag a valid value other than its default, and the value the model should hold."""
    kind = _value_type(spec.field.annotation)
    default = None if spec.field.is_required() else spec.field.get_default(call_default_factory=True)
    if kind is bool:
        return ([spec.flag] if not default else ["--no-" + spec.flag[2:]]), not default
    if get_origin(kind) is Literal:
        value = next(c for c in get_args(kind) if c != default)
        return [spec.flag, str(value).lower()], value  # case-insensitive
    if kind in (int, float):
        low, high = _bound(spec, kind)
        value = kind(max(default or 0, low or 0) + 1) if kind is int else (default or 0.75) * 2
        assert high is None or value <= high, spec.flag
        return [spec.flag, str(value)], value
    if kind is Path:
        return [spec.flag, f"/tmp/{spec.dest}"], Path(f"/tmp/{spec.dest}")
    if get_origin(kind) is list:  # repeatable
        return [spec.flag, "a", spec.flag, "b"], ["a", "b"]
    return [spec.flag, f"{spec.dest}-x"], f"{spec.dest}-x"


def _at(model: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        model = getattr(model, name)
    return model


CASES = [(cmd, spec, base, load) for cmd, model, base, load in COMMANDS for spec in flag_specs(model)]


@pytest.mark.parametrize(("cmd", "spec", "base", "load"), CASES, ids=[f"{c[0]}{c[1].flag}" for c in CASES])
def test_every_field_is_a_flag_and_reaches_the_model(cmd, spec, base, load) -> None:
    argv, expected = sample(spec)
    if spec.path == ("netuid",):
        base = []
    if spec.env_only:  # a secret: no flag (others see a process's arguments); the environment sets it
        with pytest.raises(SystemExit):
            _parse([cmd, *base, *argv])
        env = {spec.env_var(ENV_PREFIXES[cmd]): argv[-1]}
        model = next(m for c, m, _, _ in COMMANDS if c == cmd)
        settings = load_settings(model, _parse([cmd, *base]), env_prefix=ENV_PREFIXES[cmd], environ=env)
        assert _plain(_at(settings, spec.path)) == expected
        return
    settings = load(_parse([cmd, *base, *argv]))
    assert _at(settings, spec.path) == expected


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


@pytest.mark.parametrize(("cmd", "model", "base", "load"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_defaults_are_the_models_not_argparses(cmd, model, base, load) -> None:
    parser = build_parser(discover_commands())
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[cmd]
    dests = {spec.dest for spec in flag_specs(model) if not spec.env_only}
    generated = [a for a in sub._actions if a.dest in dests]
    assert len(generated) == len(dests)
    assert all(a.default is argparse.SUPPRESS for a in generated)
    settings = load(_parse([cmd, *base]))
    assert settings == model(**({"netuid": 7} if base else {}))


def test_precedence_defaults_config_env_flags(tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text('netuid = 3\nport = 9000\nhost = "0.0.0.0"\n[wallet]\nname = "fromfile"\nhotkey = "hk"\n')
    env = {"SWARMTRAIN_VALIDATOR_PORT": "9001", "SWARMTRAIN_VALIDATOR_WALLET_NAME": "fromenv",
           "SWARMTRAIN_VALIDATOR_MAX_BODY_BYTES": "", "SWARMTRAIN_MINER_PORT": "1"}
    args = _parse(["validator", "--config", str(config), "--wallet.name", "fromflag"])
    s = validator_command.settings_from(args, environ=env)
    assert (s.netuid, s.host, s.port, s.wallet.name, s.wallet.hotkey) == (3, "0.0.0.0", 9001, "fromflag", "hk")
    assert s.max_body_bytes == ValidatorSettings.model_fields["max_body_bytes"].default  # empty env: unset
    s = validator_command.settings_from(_parse(["validator", "--config", str(config), "--port", "9002"]), environ=env)
    assert (s.port, s.wallet.name) == (9002, "fromenv")


def test_every_env_var_reaches_the_model() -> None:
    for spec in flag_specs(MinerSettings):
        argv, expected = sample(spec)
        value = str(expected).lower() if isinstance(expected, bool) else argv[-1]
        env = {"SWARMTRAIN_MINER_NETUID": "7", spec.env_var("SWARMTRAIN_MINER_"): value}
        assert _at(miner_command.settings_from(_parse(["miner"]), environ=env), spec.path) == expected


def test_errors_name_the_flag_the_env_var_and_the_key(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"--netuid is required \(set by --netuid, SWARMTRAIN_MINER_NETUID"):
        miner_command.settings_from(_parse(["miner"]), environ={})
    with pytest.raises(SettingsError, match="--port .*less than or equal to 65535.*SWARMTRAIN_VALIDATOR_PORT"):
        validator_command.settings_from(_parse(["validator", *NETUID, "--port", "70000"]), environ={})
    with pytest.raises(SettingsError, match="--poll-interval-s .*'options.poll_interval_s' in --config"):
        miner_command.settings_from(_parse(["miner", *NETUID]), environ={"SWARMTRAIN_MINER_POLL_INTERVAL_S": "-1"})
    bad = tmp_path / "bad.toml"
    bad.write_text("netuid = 1\nprot = 8000\n")
    with pytest.raises(SettingsError, match="unknown setting 'prot'"):
        validator_command.settings_from(_parse(["validator", "--config", str(bad)]), environ={})
    bad.write_text("netuid = [")
    with pytest.raises(SettingsError, match="not valid TOML"):
        validator_command.settings_from(_parse(["validator", "--config", str(bad)]), environ={})
    assert getattr(_parse(["validator", "--config", str(tmp_path / "none.toml")]), CONFIG_DEST).name == "none.toml"
    with pytest.raises(SettingsError, match="none.toml"):
        validator_command.settings_from(_parse(["validator", "--config", str(tmp_path / "none.toml")]), environ={})


def test_a_bad_setting_is_one_error_line(capsys) -> None:
    from swarmtrain.cli import main

    assert main(["local", "--validators", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --validators") and "\n" not in err


def test_the_argv_localnet_gives_its_children_parses(tmp_path: Path) -> None:
    """The flags ``swarmtrain local`` starts nodes with are the settings they run on."""
    cfg = LocalNetConfig(out=tmp_path, miners=[MinerSpec("m1")], windows=1, subnet=SubnetConfig(), device="cpu")
    net = LocalNet(cfg)
    miner = miner_command.settings_from(_parse(net.miner_argv(MinerSpec("m1"))[3:]), environ={})
    assert (miner.wallet.name, miner.wallet.path, miner.state_path, miner.device) == (
        "m1", net.wallet_path, net.state_dir("m1"), "cpu")
    assert miner.subtensor.endpoint == net.url and miner.subnet_config == net.subnet_path
    assert miner.options == MinerOptions()


def test_localnet_never_gives_two_nodes_one_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A port closed a moment ago may be handed out again: the second miner must not get it."""
    from swarmtrain import localnet

    cfg = LocalNetConfig(out=tmp_path, miners=[MinerSpec("m1")], windows=1, subnet=SubnetConfig(), device="cpu")
    net = LocalNet(cfg)
    ports = iter([net.port, 5001, 5001, net.port, 5002])
    monkeypatch.setattr(localnet, "free_port", lambda: next(ports))
    assert [net.node_port(n) for n in ("m1", "m2", "m1")] == [5001, 5002, 5001]


def test_nested_groups_keep_btcli_spelling() -> None:
    flags = {spec.flag for spec in flag_specs(ValidatorSettings)}
    assert {"--wallet.name", "--wallet.hotkey", "--wallet.path", "--subtensor.network",
            "--subtensor.chain_endpoint", "--timeout", "--state", "--subnet-config", "--external-ip"} <= flags
    assert {"--sync-timeout-s", "--http-timeout-s", "--preset"} <= {s.flag for s in flag_specs(MinerSettings)}


def test_operator_flags_keep_their_names() -> None:
    """The metrics, dashboard and peer-status settings keep the flags the operator docs name."""
    miner = miner_command.settings_from(_parse(["miner", *NETUID, "--no-metrics", "--metrics-port", "0",
                                                "--metrics-host", "0.0.0.0"]), environ={})
    assert (miner.metrics, miner.metrics_port, miner.metrics_host) == (False, 0, "0.0.0.0")
    assert miner_command.settings_from(_parse(["miner", *NETUID]), environ={}).metrics
    assert local_command.settings_from(_parse(["local", "--open"]), environ={}).open_dashboard
    validator = validator_command.settings_from(_parse(["validator", *NETUID, "--peer-status-interval-s", "3",
                                                        "--peer-status-timeout-s", "2"]), environ={})
    assert (validator.peer_status_interval_s, validator.peer_status_timeout_s) == (3.0, 2.0)


def test_local_reads_its_environment() -> None:
    env = {"SWARMTRAIN_LOCAL_OUT": "/tmp/elsewhere", "SWARMTRAIN_LOCAL_MINERS": "2", "SWARMTRAIN_LOCAL_TIMEOUT": "60",
           "SWARMTRAIN_LOCAL_CHEAT": "random, stale"}
    s = local_command.settings_from(_parse(["local", "--miners", "4"]), environ=env)
    assert (s.out, s.miners, s.timeout_s, s.cheat) == (Path("/tmp/elsewhere"), 4, 60.0, ["random", "stale"])
