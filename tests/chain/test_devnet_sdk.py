"""The devnet as a real subprocess, driven by the real SDK through DevnetSubstrate.

One devnet serves the module (about 2 s to start); every test builds on the
``populated`` subnet: a validator (uid 0, staked) and two miners (uids 1, 2).
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import bittensor as bt
import pytest
import torch
from bittensor.result import ChainError, ErrorCode, RpcConnectionError

from chain.devnet.substrate import DevnetSubstrate
from chain.devnet.testing import make_extrinsic, run_devnet, sdk_client
from chain.wallets import create_wallet
from protocol.emission import EpochInputs, YumaParams, yuma_epoch
from protocol.payout import pay_epoch, split_emission

pytestmark = pytest.mark.timeout(120)
SM = bt.calls.SubtensorModule
TEMPO = 10


@pytest.fixture(scope="module")
def devnet(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))  # the SDK caches token symbols under ~/.bittensor
        with run_devnet(home / "state", block_time=0.1, tempo=TEMPO) as net:
            yield net, home


def make_wallet(home: Path, name: str) -> bt.Wallet:
    return create_wallet(name, "default", home / "wallets", overwrite=True)


async def epoch_after(client: bt.Client, last_step: int, netuid: int = 1,
                      timeout: float = 20.0) -> int:
    """Wait until an epoch of ``netuid`` after ``last_step`` has run; returns its block."""
    async def poll() -> int:
        while True:
            value = int(await client.query(("SubtensorModule", "LastEpochBlock"), [netuid]))
            if value > last_step:
                return value
            await asyncio.sleep(0.05)
    return await asyncio.wait_for(poll(), timeout)


@pytest.fixture(scope="module")
def populated(devnet):
    """Register validator + 2 miners, serve and commit miner 1, stake the validator."""
    net, home = devnet
    wallets = {name: make_wallet(home, name) for name in ("val", "m1", "m2")}

    async def setup() -> None:
        async with sdk_client(net.url) as client:
            for wallet in wallets.values():
                result = await client.submit_call(
                    SM.burned_register(netuid=1, hotkey=wallet.hotkey.ss58_address), wallet)
                assert result.success, result.message
            served = await client.execute(bt.ServeAxon(netuid=1, ip="127.0.0.1", port=8091),
                                          wallets["m1"])
            assert served.success, served.message
            committed = await client.submit_call(
                bt.calls.Commitments.set_commitment(netuid=1, info={"fields": [{"Raw5": "hello"}]}),
                wallets["m1"], signer="hotkey")
            assert committed.success, committed.message
            staked = await client.execute(bt.AddStake(
                hotkey_ss58=wallets["val"].hotkey.ss58_address, netuid=1, amount_tao=100),
                wallets["val"])
            assert staked.success, staked.message
            graph = await client.subnets.metagraph(1)
            await epoch_after(client, graph.last_step)  # the validator gets its permit

    asyncio.run(setup())
    return net, home, wallets


async def test_register_serve_commit_stake_through_the_sdk(populated):
    net, _home, w = populated
    async with sdk_client(net.url) as client:
        graph = await client.subnets.metagraph(1)
        assert graph.hotkeys == [w[n].hotkey.ss58_address for n in ("val", "m1", "m2")]
        assert graph.coldkeys == [w[n].coldkeypub.ss58_address for n in ("val", "m1", "m2")]
        assert graph.neurons[1].axon == "127.0.0.1:8091" and graph.neurons[0].axon is None
        assert graph.neurons[1].commitment.value == "hello" and graph.commitments[0] is None
        assert graph.neurons[0].validator_permit and not graph.neurons[1].validator_permit
        assert graph.neurons[0].alpha_stake.rao >= 100 * 10**9
        assert await client.read("uid", hotkey_ss58=w["m2"].hotkey.ss58_address, netuid=1) == 2
        lite = await client.read("neurons", netuid=1)
        assert [n.uid for n in lite] == [0, 1, 2] and lite[0].validator_permit
        params = await client.read("subnet_hyperparameters", netuid=1)
        assert params["tempo"] == TEMPO and params["commit_reveal_weights_enabled"] is False
        assert client.token_symbols[1] == "D1"


async def fresh_subnet(client: bt.Client, home: Path, tag: str, stakes: list[int],
                       miners: int) -> tuple[int, list[bt.Wallet], bt.Wallet]:
    """A new subnet with staked validators (uids 0..) then miners; validators hold permits.

    Returns (netuid, the uids' wallets, the subnet owner's wallet).
    """
    owner = make_wallet(home, f"{tag}-owner")
    created = await client.submit_call(SM.register_network(hotkey=owner.hotkey.ss58_address), owner)
    assert created.success, created.message
    netuid = int(await client.query(("SubtensorModule", "TotalNetworks")))
    wallets = [make_wallet(home, f"{tag}-{i}") for i in range(len(stakes) + miners)]
    for wallet in wallets:
        done = await client.submit_call(
            SM.burned_register(netuid=netuid, hotkey=wallet.hotkey.ss58_address), wallet)
        assert done.success, done.message
    for wallet, tao in zip(wallets, stakes, strict=False):
        done = await client.execute(bt.AddStake(hotkey_ss58=wallet.hotkey.ss58_address,
                                                netuid=netuid, amount_tao=tao), wallet)
        assert done.success, done.message
    last = int(await client.query(("SubtensorModule", "LastEpochBlock"), [netuid]))
    await epoch_after(client, last, netuid)
    return netuid, wallets, owner


@dataclass
class OneEpoch:
    """The chain as the SDK reads it just before and just after one epoch."""

    before: bt.Metagraph
    after: bt.Metagraph
    rows: dict
    params: dict
    block: int
    owner_stake: tuple[int, int]  # the owner hotkey's stake before, after


async def owner_stake(client: bt.Client, owner: bt.Wallet, netuid: int) -> int:
    return int(await client.query(("SubtensorModule", "TotalHotkeyAlpha"),
                                  [owner.hotkey.ss58_address, netuid]))


async def one_epoch(client: bt.Client, netuid: int, owner: bt.Wallet,
                    weights: list[tuple[bt.Wallet, dict]]) -> OneEpoch:
    """Set weights right after an epoch, then read the chain around the next epoch."""
    await epoch_after(client, (await client.subnets.metagraph(netuid)).last_step, netuid)
    for wallet, row in weights:
        done = await client.execute(bt.SetWeights(netuid=netuid, weights=row), wallet)
        assert done.success, done.message
    before = await client.subnets.metagraph(netuid)
    staked = await owner_stake(client, owner, netuid)
    rows = dict(await client.query_map(("SubtensorModule", "Weights"), [netuid]))
    params = await client.read("subnet_hyperparameters", netuid=netuid)
    block = await epoch_after(client, before.last_step, netuid)
    after = await client.subnets.metagraph(netuid)
    assert after.last_step == block == before.last_step + TEMPO + 1, "exactly one epoch passed"
    return OneEpoch(before, after, rows, params, block,
                    (staked, await owner_stake(client, owner, netuid)))


def params_from_sdk(params: dict) -> YumaParams:
    """The epoch's parameters from the SDK's hyperparameter read (chain units)."""
    return YumaParams(
        kappa=params["kappa"] / 65535, bond_alpha=1 - params["bonds_moving_avg"] / 1e6,
        bond_penalty=params["bonds_penalty"] / 65535, activity_cutoff=params["activity_cutoff"],
        max_allowed_validators=params["max_validators"], yuma3=params["yuma_version"] == 3,
        liquid_alpha=params["liquid_alpha_enabled"], alpha_low=params["alpha_low"] / 65535,
        alpha_high=params["alpha_high"] / 65535,
        alpha_sigmoid_steepness=params["alpha_sigmoid_steepness"],
    )


def expected_epoch(epoch: OneEpoch, bonds: torch.Tensor | None = None):
    """(EpochResult, EmissionSplit, Payout) of protocol.* on what the SDK read before."""
    graph, n = epoch.before, len(epoch.before.neurons)
    weights = torch.zeros(n, n, dtype=torch.float64)
    entries = torch.zeros(n, n, dtype=torch.bool)
    for uid, row in epoch.rows.items():
        for dest, value in row:
            weights[uid, dest], entries[uid, dest] = value, True
    split = split_emission(bt.Balance.from_tao(1).rao, epoch.block - graph.last_step,
                           owner_cut_enabled=epoch.params["owner_cut_enabled"])
    inputs = EpochInputs(
        weights=weights,
        stake=torch.tensor([x.alpha_stake.rao for x in graph.neurons], dtype=torch.float64),
        last_update=torch.tensor([x.last_update for x in graph.neurons]),
        registered_at=torch.tensor([x.block_at_registration for x in graph.neurons]),
        weights_set_at=torch.tensor([x.last_update if x.uid in epoch.rows else 0
                                     for x in graph.neurons]),
        bonds=torch.zeros(n, n, dtype=torch.float64) if bonds is None else bonds,
        current_block=epoch.block, emission_budget=float(split.epoch_budget),
        validator_permit=torch.tensor([x.validator_permit for x in graph.neurons]),
        last_epoch_block=graph.last_step, weight_entries=entries,
    )
    result = yuma_epoch(inputs, params_from_sdk(epoch.params))
    return result, split, pay_epoch(result.server_emission, result.validator_emission, split)


async def test_epoch_emission_equals_yuma_on_the_same_inputs(devnet):
    net, home = devnet
    async with sdk_client(net.url) as client:
        netuid, w, owner = await fresh_subnet(client, home, "yuma", stakes=[100, 50], miners=3)
        epoch = await one_epoch(client, netuid, owner,
                                [(w[0], {2: 2.0, 3: 1.0}), (w[1], {2: 1.0, 3: 1.0, 4: 1.0})])
    expected, split, payout = expected_epoch(epoch)  # no weights before: no bonds yet
    for i, neuron in enumerate(epoch.after.neurons):
        assert neuron.incentive == pytest.approx(float(expected.incentive[i]), abs=1 / 65535)
        assert neuron.dividends == pytest.approx(float(expected.dividends[i]), abs=1 / 65535)
        assert neuron.consensus == pytest.approx(float(expected.consensus[i]), abs=1 / 65535)
        assert neuron.emission.rao == int(float(expected.emission[i]) + 1e-6)
        stake_before = epoch.before.neurons[i].alpha_stake.rao
        assert neuron.alpha_stake.rao == stake_before + payout.total(i)
    incentive = [x.incentive for x in epoch.after.neurons]
    assert incentive[2] > incentive[3] > incentive[4] >= 0 and incentive[:2] == [0.0, 0.0]
    assert epoch.after.neurons[0].dividends > epoch.after.neurons[1].dividends > 0
    # the owner's 18 %, on the owner's hotkey; miners and validators half of the rest each
    assert epoch.params["owner_cut_enabled"] is True
    assert epoch.owner_stake[1] - epoch.owner_stake[0] == split.owner > 0
    blocks = epoch.block - epoch.before.last_step
    assert split.owner == pytest.approx(0.18 * blocks * 10**9, rel=1e-3)
    assert sum(payout.miners) == pytest.approx(split.miners, abs=5)
    assert sum(payout.validators) == pytest.approx(split.validators, abs=5)


async def test_the_owner_switches_the_owner_cut_off_through_the_sdk(devnet):
    net, home = devnet
    async with sdk_client(net.url) as client:
        netuid, w, owner = await fresh_subnet(client, home, "cut", stakes=[10], miners=1)
        assert int(await client.query(("SubtensorModule", "SubnetOwnerCut"))) == 11_796
        done = await client.execute(
            bt.SetHyperparameter(netuid=netuid, name="owner_cut_enabled", value=False), owner)
        assert done.success, done.message
        params = await client.read("subnet_hyperparameters", netuid=netuid)
        assert params["owner_cut_enabled"] is False
        epoch = await one_epoch(client, netuid, owner, [])  # and no weights: no incentive
    _expected, split, payout = expected_epoch(epoch)
    assert split.owner == 0 and epoch.owner_stake[1] == epoch.owner_stake[0]
    validator = epoch.after.neurons[0].alpha_stake.rao - epoch.before.neurons[0].alpha_stake.rao
    assert validator == payout.total(0) == split.miners + split.validators  # it all
    assert validator == bt.Balance.from_tao(1).rao * (epoch.block - epoch.before.last_step)


async def test_yuma3_with_liquid_alpha_through_the_sdk(devnet):
    net, home = devnet
    async with sdk_client(net.url) as client:
        netuid, w, owner = await fresh_subnet(client, home, "y3", stakes=[80, 20], miners=2)
        for name, value in (("yuma3_enabled", True), ("liquid_alpha_enabled", True),
                            ("alpha_low", 6553), ("alpha_high", 19660),
                            ("alpha_sigmoid_steepness", 500)):
            done = await client.execute(
                bt.SetHyperparameter(netuid=netuid, name=name, value=value), owner)
            assert done.success, f"{name}: {done.message}"
        params = await client.read("subnet_hyperparameters", netuid=netuid)
        assert (params["yuma_version"], params["yuma3_enabled"], params["liquid_alpha_enabled"],
                params["alpha_low"], params["alpha_high"], params["alpha_sigmoid_steepness"]) \
            == (3, True, True, 6553, 19660, 500)
        first = await one_epoch(client, netuid, owner,
                                [(w[0], {2: 1.0, 3: 1.0}), (w[1], {3: 1.0})])
        stored = [await client.query(("SubtensorModule", "Bonds"), [netuid, uid])
                  for uid in range(4)]
    expected, _split, payout = expected_epoch(first)
    assert params_from_sdk(first.params).yuma3 and params_from_sdk(first.params).liquid_alpha
    for i, neuron in enumerate(first.after.neurons):
        assert neuron.dividends == pytest.approx(float(expected.dividends[i]), abs=1 / 65535)
        assert neuron.alpha_stake.rao == first.before.neurons[i].alpha_stake.rao + payout.total(i)
        want = [[j, int(float(b) * 65535 + 1e-9)] for j, b in enumerate(expected.bonds[i]) if b]
        assert [list(x) for x in stored[i]] == want
    # Yuma3 bonds are proportions: a first epoch moves a bond from 0 towards the bond weight
    # (validator 0's clipped weight on miner 2 is .5) at a liquid alpha in [0.1, 0.3]
    assert 0.1 * 0.5 <= float(expected.bonds[0, 2]) <= 0.3 * 0.5


async def test_weight_refusals_come_back_as_failed_results_and_change_nothing(populated):
    net, home, w = populated
    stranger = make_wallet(home, "stranger")
    async with sdk_client(net.url) as client:
        weights_before = await client.query_map(("SubtensorModule", "Weights"), [1])
        with pytest.raises(ChainError) as preflight:  # the SDK checks registration first
            await client.execute(bt.SetWeights(netuid=1, weights={1: 1.0}), stranger)
        assert preflight.value.code is ErrorCode.NOT_REGISTERED

        def raw(dests: list[int]):
            return SM.set_mechanism_weights(netuid=1, mecid=0, dests=dests,
                                            weights=[65535] * len(dests), version_key=0)

        cases = [(stranger, "hotkey", [1], "HotKeyNotRegisteredInSubNet"),
                 (w["val"], "coldkey", [1], "HotKeyNotRegisteredInSubNet"),  # wrong key
                 (w["m1"], "hotkey", [2], "NeuronNoValidatorPermit"),
                 (w["val"], "hotkey", [7], "UidVecContainInvalidOne")]
        for wallet, signer, dests, name in cases:
            result = await client.submit_call(raw(dests), wallet, signer=signer)
            assert not result.success and result.error.name == name, result.message
        assert await client.query_map(("SubtensorModule", "Weights"), [1]) == weights_before

        first = await client.submit_call(raw([1, 2]), w["val"], signer="hotkey")
        current = await client.query_map(("SubtensorModule", "Weights"), [1])
        second = await client.submit_call(raw([2]), w["val"], signer="hotkey")
        assert first.success or first.error.name == "SettingWeightsTooFast"
        assert not second.success and second.error.name == "SettingWeightsTooFast"
        assert "rate limit" in second.message
        assert await client.query_map(("SubtensorModule", "Weights"), [1]) == current


class ForgingSigner:
    """A signer that signs with another key but claims the real one's address."""

    def __init__(self, real, forger):
        self.ss58_address = real.ss58_address
        self.crypto_type = 1
        self._forger = forger

    def sign(self, payload: bytes) -> bytes:
        return self._forger.sign(payload)


async def test_forged_and_replayed_extrinsics_are_refused(populated):
    net, home, w = populated
    async with sdk_client(net.url) as client:
        axon_before = (await client.subnets.metagraph(1)).neurons[2].axon
        call = await client.compose(SM.serve_axon(netuid=1, version=1, ip=0x7F000001, port=9999,
                                                  ip_type=4, protocol=4, placeholder1=0,
                                                  placeholder2=0))
        forger = ForgingSigner(w["m2"].hotkey, w["m1"].hotkey)
        forged = await client._substrate.submit(call, forger)
        assert not forged.success and forged.error.name == "BadProof"
        info = await client._substrate._rpc("chain_info", {})
        good = make_extrinsic(w["m2"].hotkey, "SubtensorModule", "serve_axon", call.params,
                              genesis_hash=info["genesis_hash"],
                              nonce=await client._substrate.account_next_index(
                                  w["m2"].hotkey.ss58_address),
                              era_block=info["head"])
        first = await client._substrate.submit_signed(good.model_dump_json().encode(), None)
        assert first.success
        replay = await client._substrate.submit_signed(good.model_dump_json().encode(), None)
        assert not replay.success and replay.error.name == "Stale"
        graph = await client.subnets.metagraph(1)
    assert axon_before is None and graph.neurons[2].axon == "127.0.0.1:9999"


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/rpc", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_malformed_rpc_requests_get_clear_errors(populated):
    net, _home, _w = populated
    before = post(net.http_url, b'{"method": "runtime_call", "params": {"api": '
                  b'"SubnetInfoRuntimeApi", "method": "get_metagraph", "params": [1]}}')[1]
    cases = [
        (b"not json", 400, "ParseError"),
        (b'{"params": {}}', 400, "InvalidRequest"),
        (b'{"method": "query", "params": {}, "extra": 1}', 400, "InvalidRequest"),
        (b'{"method": "drop_tables", "params": {}}', 400, "MethodNotFound"),
        (b'{"method": "query", "params": {"module": 5}}', 400, "InvalidParams"),
        (b'{"method": "query", "params": {"module": "SubtensorModule", '
         b'"storage_function": "Uids", "params": [1]}}', 400, "BadParams"),
        (b'{"method": "query", "params": {"module": "Nope", "storage_function": "X"}}', 200,
         "NotImplemented"),
        (b'{"method": "submit", "params": {"extrinsic": {"module": "x"}}}', 400,
         "InvalidExtrinsic"),
        (b'{"method": "block_hash", "params": {"block": 99999999}}', 200, "UnknownBlock"),
        (b'{"method": "query", "params": {"pad": "' + b"x" * (2 << 20) + b'"}}', 413,
         "TooLarge"),
    ]
    for body, status, code in cases:
        got_status, answer = post(net.http_url, body)
        assert (got_status, answer["error"]["code"]) == (status, code), body[:60]
        assert answer["error"]["message"]
    after = post(net.http_url, b'{"method": "runtime_call", "params": {"api": '
                 b'"SubnetInfoRuntimeApi", "method": "get_metagraph", "params": [1]}}')[1]
    assert after["result"]["hotkeys"] == before["result"]["hotkeys"]


async def test_unreachable_devnet_raises_a_connection_error():
    sub = DevnetSubstrate("devnet://127.0.0.1:9", timeout=2.0)
    with pytest.raises(RpcConnectionError, match="unreachable"):
        await sub.connect()
    assert sub._session is None
    with pytest.raises(ValueError):
        DevnetSubstrate("ftp://example")
