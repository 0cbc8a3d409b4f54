"""Unit tests of the chain facade's pure parts: networks, weights, commitments, errors, types."""

from __future__ import annotations

import json
import math

import bittensor as bt
import pytest
from bittensor import metagraph as sdk_metagraph

from chain.client import (
    DEVNET_DEFAULT_URL,
    commitment_fields,
    devnet_http_url,
    network_url,
    normalize_weights,
    poll_interval_for,
    rate_limit_remaining,
)
from chain.errors import (
    ChainConnectionError,
    ChainError,
    ChainTimeoutError,
    NotRegisteredError,
    RateLimitedError,
    UnknownNetworkError,
    WalletExistsError,
    WalletNotFoundError,
    domain_error,
)
from chain.types import Metagraph, hyperparams_from_raw, metagraph_from_sdk
from chain.wallets import coldkey_address, create_wallet, hotkey_address, load_wallet


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        ("devnet", DEVNET_DEFAULT_URL),
        ("devnet://10.0.0.5:7000", "devnet://10.0.0.5:7000"),
        ("local", "ws://127.0.0.1:9944"),
        ("ws://1.2.3.4:9944", "ws://1.2.3.4:9944"),
        ("wss://node.example:443", "wss://node.example:443"),
    ],
)
def test_network_url_known(network, expected):
    assert network_url(network) == expected


def test_network_url_real_networks_are_secure_websockets():
    for name in ("finney", "test"):
        assert network_url(name).startswith("wss://")
    assert network_url("finney") != network_url("test")


@pytest.mark.parametrize("bad", ["mainnet", "", "http://x:1", "devnet://nohost", "devnet://h:port"])
def test_network_url_unknown_is_a_clear_error(bad):
    with pytest.raises(UnknownNetworkError) as info:
        network_url(bad)
    assert isinstance(info.value, ValueError)
    assert "devnet" in str(info.value)


def test_devnet_http_url():
    assert devnet_http_url("devnet://127.0.0.1:9946") == "http://127.0.0.1:9946"


def test_poll_interval_follows_block_time():
    assert poll_interval_for(12.0) == 3.0 and poll_interval_for(0.2) == 0.05
    assert poll_interval_for(1.0) == 0.25


def test_normalize_weights_sums_to_one_and_drops_zeros():
    out = normalize_weights({3: 3.0, 0: 1.0, 7: 0.0})
    assert out == {0: 0.25, 3: 0.75}
    assert list(out) == [0, 3]
    assert math.isclose(sum(normalize_weights({i: i + 0.5 for i in range(10)}).values()), 1.0)


@pytest.mark.parametrize("bad", [{}, {0: 0.0}, {0: -1.0, 1: 2.0}, {0: float("nan")}, {-1: 1.0}])
def test_normalize_weights_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        normalize_weights(bad)


def test_commitment_fields_chunks_round_trip():
    text = '{"v":1,"fp":"' + "a" * 64 + '","crit":"' + "b" * 64 + '"}'
    fields = commitment_fields(text)
    assert len(fields) == 2
    assert [next(iter(f)) for f in fields] == ["Raw128", f"Raw{len(text) - 128}"]
    # the SDK's decoder concatenates Raw fields back to the text
    assert sdk_metagraph._decode_fields(fields) == text


def test_commitment_fields_limits():
    with pytest.raises(ValueError):
        commitment_fields("")
    with pytest.raises(ValueError):
        commitment_fields("x" * (3 * 128 + 1))
    assert len(commitment_fields("é" * 192)) == 3  # 384 utf-8 bytes fit exactly


@pytest.mark.parametrize(
    ("block", "last", "limit", "wait"),
    [(100, 0, 10, 0), (100, 95, 10, 5), (100, 90, 10, 0), (100, 99, 0, 0), (100, 100, 3, 3)],
)
def test_rate_limit_remaining(block, last, limit, wait):
    assert rate_limit_remaining(block, last, limit) == wait


def test_domain_error_mapping_keeps_reason():
    not_reg = domain_error(
        bt.ChainError("Hotkey x is not registered", code=bt.ErrorCode.NOT_REGISTERED), "serve"
    )
    assert isinstance(not_reg, NotRegisteredError) and "not registered" in str(not_reg)
    limited = domain_error(
        bt.ChainError(
            "last set 2 blocks ago. Retry in ~8 blocks (~1s).", code=bt.ErrorCode.RATE_LIMITED
        ),
        "set weights",
    )
    assert isinstance(limited, RateLimitedError) and limited.blocks == 8
    other = domain_error(bt.ChainError("nope", name="SubNetworkDoesNotExist"), "register")
    assert type(other) is ChainError and other.name == "SubNetworkDoesNotExist"
    assert "SubNetworkDoesNotExist" in other.reason
    assert isinstance(domain_error(TimeoutError(), "read"), ChainTimeoutError)
    assert isinstance(domain_error(ConnectionRefusedError("refused"), "read"), ChainConnectionError)


def test_hyperparams_from_raw_defaults_and_units():
    hp = hyperparams_from_raw(
        1,
        {
            "tempo": 10,
            "weights_rate_limit": 5,
            "commit_reveal_enabled": None,
            "min_allowed_weights": 1,
            "max_weights_limit": 65535,
            "activity_cutoff": 5000,
            "immunity_period": None,
            "max_allowed_uids": 256,
            "max_allowed_validators": 64,
            "burn": 1_500_000_000,
            "pow_registration_allowed": True,
        },
    )
    assert hp.burn == 1.5 and hp.immunity_period == 0 and hp.commit_reveal_enabled is False
    assert hp.pow_registration_allowed is True and hp.to_dict()["tempo"] == 10


def _sdk_graph(n: int) -> dict:
    """A raw get_metagraph record in the shape the SDK decodes (u16 scores, rao amounts)."""
    return {
        "netuid": 1,
        "name": "t",
        "symbol": "b",
        "block": 42,
        "tempo": 10,
        "last_step": 40,
        "blocks_since_last_step": 2,
        "owner_hotkey": "5Own",
        "owner_coldkey": "5OwnC",
        "network_registered_at": 0,
        "num_uids": n,
        "max_uids": 256,
        "hotkeys": [f"5Hot{i}" for i in range(n)],
        "coldkeys": [f"5Cold{i}" for i in range(n)],
        "axons": [
            {"ip": 2130706433, "port": 8000 + i, "ip_type": 4} if i else {"ip": 0} for i in range(n)
        ],
        "validator_permit": [i == 0 for i in range(n)],
        "last_update": [i * 3 for i in range(n)],
        "incentives": [65535 if i == 1 else 0 for i in range(n)],
        "dividends": [65535 if i == 0 else 0 for i in range(n)],
        "consensus": [0] * n,
        "emission": [1_000_000_000 * i for i in range(n)],
        "total_stake": [2_500_000_000 if i == 0 else 0 for i in range(n)],
    }


def test_metagraph_from_sdk_plain_values_and_commitments():
    commitments = sdk_metagraph._commitments(
        1,
        [("5Hot0", {"block": 40, "deposit": 0, "info": {"fields": commitment_fields("hello")}})],
        [],
        42,
    )
    mg = metagraph_from_sdk(sdk_metagraph._build(1, _sdk_graph(3), commitments))
    assert (mg.netuid, mg.block, mg.uids) == (1, 42, [0, 1, 2])
    assert mg.stake == [2.5, 0.0, 0.0] and mg.validator_permit == [True, False, False]
    assert mg.axons == [None, "127.0.0.1:8001", "127.0.0.1:8002"]
    assert mg.incentive == [0.0, 1.0, 0.0] and mg.dividends == [1.0, 0.0, 0.0]
    assert mg.emission == [0.0, 1.0, 2.0] and mg.last_update == [0, 3, 6]
    assert mg.commitments == {"5Hot0": "hello"}
    assert mg.uid_of("5Hot2") == 2 and mg.uid_of("5Nobody") is None
    assert all(type(x) is float for x in mg.stake + mg.incentive + mg.emission)


def test_metagraph_json_shape():
    mg = Metagraph(
        netuid=1,
        block=7,
        uids=[0],
        hotkeys=["h"],
        coldkeys=["c"],
        stake=[1.0],
        validator_permit=[True],
        axons=["1.2.3.4:5"],
        last_update=[3],
        incentive=[0.5],
        dividends=[0.25],
        emission=[0.1],
        consensus=[0.0],
        commitments={"h": "x"},
    )
    doc = json.loads(mg.to_json())
    assert doc["netuid"] == 1 and doc["block"] == 7
    (neuron,) = doc["neurons"]
    for key in (
        "uid",
        "hotkey",
        "stake",
        "validator_permit",
        "incentive",
        "dividends",
        "emission",
        "axon",
    ):
        assert key in neuron
    assert neuron["commitment"] == "x" and neuron["axon"] == "1.2.3.4:5"


def test_wallet_create_load_and_errors(tmp_path):
    path = tmp_path / "wallets"
    with pytest.raises(WalletNotFoundError) as info:
        load_wallet("w", "h", path)
    assert "swarmtrain wallet create" in str(info.value)
    created = create_wallet("w", "h", path)
    loaded = load_wallet("w", "h", path)
    assert hotkey_address(loaded) == hotkey_address(created)
    assert coldkey_address(loaded) == coldkey_address(created)
    with pytest.raises(WalletExistsError):
        create_wallet("w", "h", path)
    second = create_wallet("w", "h2", path)  # same coldkey, new hotkey
    assert coldkey_address(second) == coldkey_address(created)
    assert hotkey_address(second) != hotkey_address(created)
    replaced = create_wallet("w", "h", path, overwrite=True)
    assert hotkey_address(replaced) != hotkey_address(created)
    assert oct((path / "w" / "coldkey").stat().st_mode & 0o777) == "0o600"
