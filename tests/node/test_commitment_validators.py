"""Commitment round trip, garbage rejection, validator discovery from a metagraph."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from node.commitment import MAX_COMMITMENT_BYTES, ValidatorCommitment, parse_commitment
from node.validators import axon_url, find_validators, lead_validator


def test_round_trip_and_size():
    c = ValidatorCommitment(fp="ab" * 32, crit="cd" * 32)
    text = c.to_str()
    assert len(text.encode()) <= MAX_COMMITMENT_BYTES
    assert parse_commitment(text) == c


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "not json",
        '{"v":1,"fp":"xyz","crit":"ab"}',
        '{"v":2,"fp":"' + "ab" * 32 + '","crit":"ab"}',
        '{"v":1,"fp":"' + "ab" * 32 + '","crit":"ab","extra":1}',
        '{"v":1,"fp":"' + "AB" * 32 + '","crit":"ab"}',
        '{"v":1,"crit":"ab"}',
        "x" * 1000,
        "[1,2,3]",
    ],
)
def test_garbage_is_none(text):
    assert parse_commitment(text) is None


@dataclass
class FakeMetagraph:
    uids: list[int]
    hotkeys: list[str]
    stake: list[float]
    validator_permit: list[bool]
    axons: list[str | None]
    commitments: dict[str, str] = field(default_factory=dict)


def _commit(fp_byte: str) -> str:
    return ValidatorCommitment(fp=fp_byte * 32, crit="01").to_str()


def test_find_validators_orders_by_stake_and_filters():
    mg = FakeMetagraph(
        uids=[0, 1, 2, 3, 4],
        hotkeys=["v0", "m1", "v2", "v3", "v4"],
        stake=[10.0, 0.0, 50.0, 80.0, 99.0],
        validator_permit=[True, False, True, True, False],
        axons=["127.0.0.1:8001", None, "127.0.0.1:8002", "0.0.0.0:0", "127.0.0.1:8004"],
        commitments={"v0": _commit("aa"), "v2": _commit("bb"), "v3": _commit("cc"), "v4": _commit("dd")},
    )
    vals = find_validators(mg)
    assert [v.uid for v in vals] == [2, 0]  # v3 unserved, v4 no permit, m1 nothing
    assert vals[0].url == "https://127.0.0.1:8002" and vals[0].fingerprint == "bb" * 32
    assert lead_validator(mg).hotkey == "v2"
    assert [v.uid for v in find_validators(mg, require_permit=False)] == [4, 2, 0]


def test_no_validator():
    mg = FakeMetagraph([0], ["m"], [0.0], [False], [None])
    assert lead_validator(mg) is None


@pytest.mark.parametrize(
    "axon,url",
    [("1.2.3.4:80", "https://1.2.3.4:80"), (None, None), ("0.0.0.0:0", None), ("::1:9000", "https://[::1]:9000"), ("bad", None)],
)
def test_axon_url(axon, url):
    assert axon_url(axon) == url


def test_load_subnet_config_checks_flags_against_the_file(tmp_path):
    from node.subnet_setup import load_subnet_config
    from protocol.subnet import SubnetConfig

    assert load_subnet_config(None, netuid=3).netuid == 3
    assert load_subnet_config(None, netuid=3, preset="small").preset == "small"
    path = tmp_path / "subnet.json"
    SubnetConfig(netuid=2, preset="tiny").save(path)
    assert load_subnet_config(path, netuid=2).preset == "tiny"
    with pytest.raises(ValueError, match="--netuid 5"):
        load_subnet_config(path, netuid=5)
    with pytest.raises(ValueError, match="--preset small"):
        load_subnet_config(path, netuid=2, preset="small")
