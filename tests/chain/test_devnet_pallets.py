"""Devnet chain logic in-process (no subprocess): pool, pallets, epochs, atomic blocks."""

from __future__ import annotations

import sqlite3

import bittensor_core
import pytest
import torch

from chain.devnet import epoch as epoch_mod
from chain.devnet.blockchain import Devnet, PoolRejection, StateFormatError, StateInUseError
from chain.devnet.calls import ALICE, CallRejected, normalize_fields, parse_call
from chain.devnet.epoch import epoch_due, epoch_inputs, to_u16, yuma_params
from chain.devnet.params import RAO_PER_TAO, U16_MAX, DevnetConfig
from chain.devnet.testing import make_extrinsic
from protocol.emission import yuma_epoch
from protocol.payout import pay_epoch, split_emission

SM = "SubtensorModule"


def key(name: str) -> bittensor_core.Keypair:
    return bittensor_core.Keypair.create_from_uri(f"//{name}")


@pytest.fixture
def net(tmp_path):
    chain = Devnet.open(tmp_path / "state", DevnetConfig(tempo=100, block_time=0.1))
    yield chain
    chain.close()


def send(net: Devnet, kp, module: str, function: str, params: dict, **overrides):
    """Sign with the next nonce, queue and include in a new block; returns the outcome."""
    fields = {"genesis_hash": net.genesis_hash, "nonce": net.account_next_index(kp.ss58_address),
              "era_block": net.head(), **overrides}
    net.submit(make_extrinsic(kp, module, function, params, **fields))
    (included,) = net.produce_block().included
    return included


def register(net: Devnet, cold, hot, netuid: int = 1):
    return send(net, cold, SM, "burned_register", {"netuid": netuid, "hotkey": hot.ss58_address})


def snapshot(net: Devnet) -> dict[str, list]:
    """Every chain table except the block/extrinsic/event logs, for "nothing changed" checks."""
    tables = ["accounts", "subnets", "neurons", "owners", "stake", "weights", "weight_rows",
              "bonds", "commitments"]
    return {t: [tuple(r) for r in net.state.conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2")]
            for t in tables}


def error_name(included) -> str | None:
    return None if included.success else included.error["name"]


# Registration -------------------------------------------------------------------


def test_register_assigns_uids_and_burns_from_the_faucet_balance(net):
    cold, h0, h1 = key("c"), key("h0"), key("h1")
    assert register(net, cold, h0).success and register(net, cold, h1).success
    assert [n.hotkey for n in net.state.neurons(1)] == [h0.ss58_address, h1.ss58_address]
    free, nonce = net.state.account(cold.ss58_address)
    burn = net.state.subnet(1).hyperparams["burn"]
    assert free == net.cfg.faucet_rao - 2 * burn and nonce == 2
    assert net.storage.query(SM, "Uids", [1, h1.ss58_address]) == 1
    assert net.storage.query(SM, "Uids", [1, key("nobody").ss58_address]) is None
    assert net.storage.query(SM, "Owner", [h0.ss58_address]) == cold.ss58_address


def test_register_refusals_change_nothing_but_the_nonce(net):
    cold, other, hot = key("c"), key("other"), key("h")
    register(net, cold, hot)
    before = snapshot(net)
    assert error_name(register(net, cold, hot)) == "HotKeyAlreadyRegisteredInSubNet"
    assert error_name(register(net, other, key("h2"), netuid=7)) == "SubnetNotExists"
    after = snapshot(net)
    nonces = {r[0]: r[2] for r in after.pop("accounts")}
    before.pop("accounts")
    assert after == before and nonces[cold.ss58_address] == 2
    # a hotkey owned by one coldkey cannot be registered by another, on any subnet
    assert error_name(register(net, other, hot)) == "HotKeyAlreadyRegisteredInSubNet"
    send(net, other, SM, "register_network", {"hotkey": key("oh").ss58_address})
    assert error_name(register(net, other, hot, netuid=2)) == "NonAssociatedColdKey"


def test_full_subnet_prunes_the_lowest_emission_non_immune_uid(tmp_path):
    cfg = DevnetConfig(tempo=100, max_allowed_uids=2, immunity_period=3)
    net = Devnet.open(tmp_path, cfg)
    cold = key("c")
    register(net, cold, key("a"))
    register(net, cold, key("b"))
    assert error_name(register(net, cold, key("c1"))) == "NoNeuronIdAvailable"  # all immune
    for _ in range(3):
        net.produce_block()
    a = net.state.neuron(1, 0)
    a.emission = 10  # uid 0 earned, uid 1 did not: uid 1 goes
    net.state.put_neuron(a)
    assert register(net, cold, key("c2")).success
    assert [n.hotkey for n in net.state.neurons(1)] == [key("a").ss58_address,
                                                         key("c2").ss58_address]
    net.close()


# Pool: signatures, nonces, calls -----------------------------------------------


def test_forged_wrong_chain_replayed_and_future_extrinsics_are_refused(net):
    cold, hot = key("c"), key("h")
    params = {"netuid": 1, "hotkey": hot.ss58_address}
    good = make_extrinsic(cold, SM, "burned_register", params, genesis_hash=net.genesis_hash,
                          nonce=0, era_block=0)
    forged = good.model_copy(update={"signature": "0x" + bytes(key("mallory").sign(
        good.payload())).hex()})
    other_chain = make_extrinsic(cold, SM, "burned_register", params, genesis_hash="0x" + "11" * 32,
                                 nonce=0, era_block=0)
    tampered = good.model_copy(update={"params": {"netuid": 1, "hotkey": cold.ss58_address}})
    before = snapshot(net)
    for ext, name in [(forged, "BadProof"), (other_chain, "BadProof"), (tampered, "BadProof"),
                      (good.model_copy(update={"nonce": 5}), "BadProof")]:
        with pytest.raises(PoolRejection) as refused:
            net.submit(ext)
        assert refused.value.name == name
    net.produce_block()
    assert snapshot(net) == before
    net.submit(good)
    assert net.produce_block().included[0].success
    with pytest.raises(PoolRejection) as replay:
        net.submit(good)
    assert replay.value.name == "Stale"
    future = make_extrinsic(cold, SM, "burned_register", params, genesis_hash=net.genesis_hash,
                            nonce=3, era_block=net.head())
    with pytest.raises(PoolRejection, match="Future"):
        net.submit(future)


def test_unknown_calls_and_bad_params_are_refused_at_the_pool(net):
    with pytest.raises(CallRejected, match="does not implement"):
        parse_call(SM, "pow_register", {})
    with pytest.raises(CallRejected, match="ss58"):
        parse_call(SM, "burned_register", {"netuid": 1, "hotkey": "not-a-key"})
    with pytest.raises(CallRejected, match="netuid"):
        parse_call(SM, "burned_register", {"netuid": -1, "hotkey": key("h").ss58_address})
    with pytest.raises(CallRejected, match="u16"):
        parse_call(SM, "set_weights", {"netuid": 1, "dests": [0], "weights": [70000],
                                       "version_key": 0})
    cold = key("c")
    ext = make_extrinsic(cold, SM, "set_weights", {"netuid": 1}, genesis_hash=net.genesis_hash,
                         nonce=0, era_block=0)
    with pytest.raises(PoolRejection) as refused:
        net.submit(ext)
    assert refused.value.name == "Call" and net.account_next_index(cold.ss58_address) == 0


def test_commitment_fields_are_normalized_to_the_chain_shape():
    assert normalize_fields([[{"Raw5": "68656c6c6f"}]]) == [{"Raw5": "0x68656c6c6f"}]
    assert normalize_fields([{"Raw5": "hello"}, {"Raw2": [104, 105]}]) == [
        {"Raw5": "0x68656c6c6f"}, {"Raw2": "0x6869"}]
    for bad in ([{"Raw4": "hello"}], [{"Foo": "x"}], [{"Raw1": "a"}] * 4, ["Raw1"]):
        with pytest.raises(ValueError):
            normalize_fields(bad)


# Weights --------------------------------------------------------------------------


@pytest.fixture
def subnet(net):
    """uid 0 = validator (staked, permit after one epoch), uid 1 and 2 = miners."""
    cold, val, m1, m2 = key("c"), key("val"), key("m1"), key("m2")
    for hot in (val, m1, m2):
        assert register(net, cold, hot).success
    assert send(net, cold, SM, "add_stake", {"hotkey": val.ss58_address, "netuid": 1,
                                             "amount_staked": 50 * RAO_PER_TAO}).success
    epoch_mod.run_epoch(net.state, net.cfg, 1, net.head())
    for _ in range(int(net.state.subnet(1).hyperparams["weights_rate_limit"])):
        net.produce_block()
    return net, val, m1, m2


def weights(net, hot, dests, values, version_key=0):
    return send(net, hot, SM, "set_weights", {"netuid": 1, "dests": dests, "weights": values,
                                              "version_key": version_key})


def test_weights_are_checked_like_the_chain(subnet):
    net, val, m1, _m2 = subnet
    assert net.state.neuron(1, 0).validator_permit and not net.state.neuron(1, 1).validator_permit
    before = snapshot(net)
    cases = [
        (key("stranger"), [1], [1], 0, "HotKeyNotRegisteredInSubNet"),
        (m1, [2], [1], 0, "NeuronNoValidatorPermit"),
        (val, [1, 1], [1, 2], 0, "DuplicateUids"),
        (val, [9], [1], 0, "UidVecContainInvalidOne"),
        (val, [1, 2], [1], 0, "WeightVecNotEqualSize"),
    ]
    for hot, dests, values, version, name in cases:
        assert error_name(weights(net, hot, dests, values, version)) == name, name
    assert snapshot(net)["weights"] == before["weights"]
    assert weights(net, m1, [1], [5]).success  # a pure self-weight needs no permit
    assert weights(net, val, [1, 2], [100, 50]).success
    assert net.storage.query(SM, "Weights", [1, 0]) == [[1, U16_MAX], [2, 32768]]
    assert error_name(weights(net, val, [1], [1])) == "SettingWeightsTooFast"


def test_version_key_min_weights_and_max_weight_limit(subnet):
    net, val, _m1, _m2 = subnet
    alice = key("Alice")
    for fn, value in [("sudo_set_weights_version_key", {"weights_version_key": 3}),
                      ("sudo_set_min_allowed_weights", {"min_allowed_weights": 2}),
                      ("sudo_set_max_weight_limit", {"max_weight_limit": 40000})]:
        assert send(net, alice, "AdminUtils", fn, {"netuid": 1, **value}).success
    assert error_name(weights(net, val, [1, 2], [1, 1], version_key=2)) == \
        "IncorrectWeightVersionKey"
    assert error_name(weights(net, val, [1], [1], version_key=3)) == "WeightVecLengthIsLow"
    assert error_name(weights(net, val, [1, 2], [9, 1], version_key=3)) == "MaxWeightExceeded"
    assert weights(net, val, [1, 2], [1, 1], version_key=3).success


def test_admin_calls_need_the_owner_or_sudo(net):
    assert error_name(send(net, key("nobody"), "AdminUtils", "sudo_set_tempo",
                           {"netuid": 1, "tempo": 5})) == "BadOrigin"
    assert error_name(send(net, key("Alice"), "AdminUtils", "sudo_set_commit_reveal_weights_enabled",
                           {"netuid": 1, "enabled": True})) == "NotSupported"
    assert send(net, key("Alice"), "AdminUtils", "sudo_set_tempo",
                {"netuid": 1, "tempo": 5}).success
    assert net.storage.query(SM, "Tempo", [1]) == 5


# Epochs ---------------------------------------------------------------------------


def test_epoch_schedule_matches_subtensor():
    for tempo in (1, 5, 10, 360):
        for netuid in (1, 2, 7):
            due = [b for b in range(3 * (tempo + 1)) if epoch_due(netuid, tempo, b)]
            assert len(due) == 3 and all(b2 - b1 == tempo + 1 for b1, b2 in zip(due, due[1:], strict=False))


def test_epoch_stores_yuma_outputs_and_pays_emission_as_stake(subnet):
    net, val, m1, m2 = subnet
    assert weights(net, val, [1, 2], [3, 1]).success
    sub = net.state.subnet(1)
    block = net.head() + 1
    neurons = net.state.neurons(1)
    split = epoch_mod.emission_split(net.cfg, sub, block)
    blocks = block - sub.last_epoch_block
    assert split == split_emission(net.cfg.emission_rao_per_block, blocks)  # owner cut on
    inputs = epoch_inputs(net.state, sub, neurons, block, split.epoch_budget)
    expected = yuma_epoch(inputs, yuma_params(sub.hyperparams))
    payout = pay_epoch(expected.server_emission, expected.validator_emission, split)
    stakes_before = [net.state.stake(n.hotkey, 1) for n in neurons]
    owner_before = net.state.stake(ALICE, 1, ALICE)
    epoch_mod.run_epoch(net.state, net.cfg, 1, block)
    stored = net.state.neurons(1)
    for i, n in enumerate(stored):
        assert n.incentive == to_u16(float(expected.incentive[i]))
        assert n.dividends == to_u16(float(expected.dividends[i]))
        assert n.consensus == to_u16(float(expected.consensus[i]))
        assert n.emission == int(float(expected.emission[i]) + 1e-6)
        assert net.state.stake(n.hotkey, 1) == stakes_before[i] + payout.total(i)
    assert stored[1].incentive > stored[2].incentive > 0 and stored[0].dividends == U16_MAX
    # miners half, the validator half of what the owner's 18 % leaves; the owner its cut
    assert payout.total(1) + payout.total(2) == pytest.approx(split.miners, abs=2)
    assert payout.total(0) == split.validators
    assert net.state.stake(ALICE, 1, ALICE) == owner_before + split.owner
    assert split.owner == pytest.approx(0.18 * blocks * RAO_PER_TAO, rel=1e-3)
    bonds = epoch_inputs(net.state, sub, stored, block, 0).bonds
    assert torch.allclose(bonds, torch.floor(expected.bonds * U16_MAX) / U16_MAX)


def test_an_epoch_without_incentive_pays_the_validator_everything_but_the_owner_cut(subnet):
    net, val, _m1, _m2 = subnet
    sub = net.state.subnet(1)
    block = net.head() + 1
    split = epoch_mod.emission_split(net.cfg, sub, block)
    before = net.state.stake(val.ss58_address, 1)
    summary = epoch_mod.run_epoch(net.state, net.cfg, 1, block)  # no weights set
    assert net.state.stake(val.ss58_address, 1) == before + split.miners + split.validators
    assert summary.owner_rao == split.owner
    assert summary.emitted_rao == split.owner + split.miners + split.validators


def test_owner_cut_can_be_switched_off_and_owned_hotkeys_earn_no_incentive(net):
    alice, cold, val, own = key("Alice"), key("c"), key("val"), key("own-miner")
    assert send(net, alice, "AdminUtils", "sudo_set_owner_cut_enabled",
                {"netuid": 1, "enabled": False}).success
    assert register(net, cold, val).success and register(net, alice, own).success
    assert send(net, cold, SM, "add_stake", {"hotkey": val.ss58_address, "netuid": 1,
                                             "amount_staked": 50 * RAO_PER_TAO}).success
    epoch_mod.run_epoch(net.state, net.cfg, 1, net.head())
    for _ in range(int(net.state.subnet(1).hyperparams["weights_rate_limit"])):
        net.produce_block()
    assert weights(net, val, [1], [1]).success
    block = net.head() + 1
    split = epoch_mod.emission_split(net.cfg, net.state.subnet(1), block)
    assert split.owner == 0
    alice_before = net.state.stake(ALICE, 1)
    summary = epoch_mod.run_epoch(net.state, net.cfg, 1, block)
    assert net.state.neuron(1, 1).incentive == U16_MAX  # it earned the incentive ...
    assert net.state.stake(own.ss58_address, 1) == 0  # ... but the owner's hotkeys' is burned
    assert summary.burned_rao == split.miners and net.state.stake(ALICE, 1) == alice_before


def test_alpha_values_and_sigmoid_steepness_are_set_with_the_chains_checks(net):
    alice, owner = key("Alice"), key("sn-owner")
    assert send(net, owner, SM, "register_network", {"hotkey": key("sn-hot").ss58_address}).success

    def alpha_values(signer, low, high, netuid=2):
        return send(net, signer, "AdminUtils", "sudo_set_alpha_values",
                    {"netuid": netuid, "alpha_low": low, "alpha_high": high})

    assert error_name(alpha_values(owner, 6553, 19660)) == "LiquidAlphaDisabled"
    assert send(net, owner, "AdminUtils", "sudo_set_liquid_alpha_enabled",
                {"netuid": 2, "enabled": True}).success
    assert error_name(alpha_values(owner, 1000, 1500)) == "AlphaHighTooLow"
    assert error_name(alpha_values(owner, 1000, 19660)) == "AlphaLowOutOfRange"
    assert error_name(alpha_values(owner, 20000, 19660)) == "AlphaLowOutOfRange"
    assert error_name(alpha_values(key("x"), 6553, 19660)) == "BadOrigin"
    assert alpha_values(owner, 6553, 19660).success
    assert net.storage.query(SM, "AlphaValues", [2]) == [6553, 19660]
    assert net.state.subnet(1).hyperparams["alpha_low"] == 45875  # other subnets untouched

    def steepness(signer, value):
        return send(net, signer, "AdminUtils", "sudo_set_alpha_sigmoid_steepness",
                    {"netuid": 2, "steepness": value})

    assert error_name(steepness(owner, -5)) == "NegativeSigmoidSteepness"
    assert steepness(owner, 500).success and steepness(alice, -5).success
    assert net.storage.query(SM, "AlphaSigmoidSteepness", [2]) == -5
    assert error_name(steepness(alice, 40000)) == "InvalidValue"
    with pytest.raises(PoolRejection, match="alpha_low, alpha_high"):
        net.submit(make_extrinsic(owner, "AdminUtils", "sudo_set_alpha_values", {"netuid": 2},
                                  genesis_hash=net.genesis_hash,
                                  nonce=net.account_next_index(owner.ss58_address),
                                  era_block=net.head()))
    assert net.storage.query(SM, "SubnetOwnerCut", []) == 11_796


def test_re_registration_drops_the_uids_row_now_and_its_bond_column_at_the_next_epoch(subnet):
    net, val, m1, _m2 = subnet
    assert weights(net, val, [1, 2], [3, 1]).success
    epoch_mod.run_epoch(net.state, net.cfg, 1, net.head())
    assert {d for d, _ in net.state.bonds(1)[0]} == {1, 2}
    net.state.set_weights(1, 1, [(2, 5)], net.head())  # uid 1 holds weights (a self-row)
    sub = net.state.subnet(1)
    sub.hyperparams["max_allowed_uids"] = 3
    sub.hyperparams["immunity_period"] = 0
    net.state.put_subnet(sub)
    assert register(net, key("c"), key("new")).success  # replaces uid 2 (least emission)
    assert net.state.neuron(1, 2).hotkey == key("new").ss58_address
    assert net.storage.query(SM, "Weights", [1, 0]) == [[1, U16_MAX], [2, 0]]  # zeroed
    assert {d for d, _ in net.state.bonds(1)[0]} == {1, 2}  # the column waits for the epoch
    epoch_mod.run_epoch(net.state, net.cfg, 1, net.head() + 1)
    assert {d for d, _ in net.state.bonds(1)[0]} == {1}


def test_epochs_run_before_the_blocks_extrinsics(subnet):
    net, val, _m1, _m2 = subnet
    tempo = int(net.state.subnet(1).hyperparams["tempo"])
    while not epoch_due(1, tempo, net.head() + 1):
        net.produce_block()
    assert weights(net, val, [1, 2], [1, 1]).success  # included in the epoch's block
    assert net.state.subnet(1).last_epoch_block == net.head()
    assert [n.incentive for n in net.state.neurons(1)] == [0, 0, 0]  # not seen yet


def test_a_failing_block_is_rolled_back_entirely(subnet, monkeypatch):
    net, val, _m1, _m2 = subnet
    head = net.head()
    net.submit(make_extrinsic(val, SM, "set_weights", {"netuid": 1, "dests": [1], "weights": [1],
                                                       "version_key": 0},
                              genesis_hash=net.genesis_hash, nonce=0, era_block=head))
    before = snapshot(net)

    def crash(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr("chain.devnet.blockchain.epoch_due", lambda *a: True)
    monkeypatch.setattr("chain.devnet.blockchain.run_epoch", crash)
    with pytest.raises(RuntimeError):
        net.produce_block()
    assert net.head() == head and snapshot(net) == before
    assert net.state.conn.execute("SELECT COUNT(*) FROM extrinsics WHERE block=?",
                                  (head + 1,)).fetchone()[0] == 0


def test_state_survives_reopen(tmp_path):
    cfg = DevnetConfig(tempo=3)
    net = Devnet.open(tmp_path, cfg)
    register(net, key("c"), key("h"))
    for _ in range(5):
        net.produce_block()
    head, genesis = net.head(), net.genesis_hash
    net.close()
    again = Devnet.open(tmp_path, cfg)
    assert again.head() == head and again.genesis_hash == genesis
    assert again.storage.query(SM, "Uids", [1, key("h").ss58_address]) == 0
    assert again.produce_block().number == head + 1
    assert sqlite3.connect(tmp_path / "devnet.sqlite").execute(
        "PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


def test_reopen_fills_hyperparameters_an_older_devnet_did_not_store(tmp_path):
    net = Devnet.open(tmp_path, DevnetConfig())
    subnet = net.state.subnet(1)
    del subnet.hyperparams["weights_min_stake"]
    subnet.hyperparams["tempo"] = 7
    net.state.put_subnet(subnet)
    net.close()
    again = Devnet.open(tmp_path, DevnetConfig())
    params = again.state.subnet(1).hyperparams
    assert params["weights_min_stake"] == 0 and params["tempo"] == 7
    again.close()


def test_reopen_brings_an_older_state_to_the_chains_emission_rules(tmp_path):
    net = Devnet.open(tmp_path, DevnetConfig())
    subnet = net.state.subnet(1)
    subnet.hyperparams["owner_cut_enabled"] = False  # what devnets before stored
    for name in ("alpha_low", "alpha_high", "alpha_sigmoid_steepness"):
        del subnet.hyperparams[name]
    net.state.put_subnet(subnet)
    net.state.conn.execute("DELETE FROM meta WHERE key='emission_rules'")
    net.close()
    again = Devnet.open(tmp_path, DevnetConfig())
    params = again.state.subnet(1).hyperparams
    assert params["owner_cut_enabled"] is True and params["alpha_low"] == 45875
    again.state.set_meta("emission_rules", "subtensor-99")
    again.close()
    with pytest.raises(StateFormatError, match="newer devnet.*new --state directory"):
        Devnet.open(tmp_path, DevnetConfig())
    Devnet.open(tmp_path / "fresh", DevnetConfig()).close()  # the lock was released: reopen
    with pytest.raises(StateFormatError):
        Devnet.open(tmp_path, DevnetConfig())


def test_one_devnet_per_state_directory(tmp_path):
    first = Devnet.open(tmp_path, DevnetConfig())
    with pytest.raises(StateInUseError, match="another devnet"):
        Devnet.open(tmp_path, DevnetConfig())
    first.close()
    Devnet.open(tmp_path, DevnetConfig()).close()  # free again once closed
