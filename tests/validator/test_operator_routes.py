"""The operator side of a validator, over real HTTPS with a fake chain: the dashboard's page and
data, Prometheus /metrics, GET /subnet-config, per-miner rows in /status, a second validator
or a miner with another subnet config refused with the fields that differ, and the stake hint."""

from __future__ import annotations

import json
import logging

import pytest
from bittensor.sp_core import Keypair
from prometheus_client.parser import text_string_to_metric_families

from chain.errors import ChainError
from node.signed_http import SignedClient
from node.subnet_check import SubnetConfigMismatch, check_against
from node.validators import find_validators
from protocol.criteria import MinerScore
from validator.service import Validator
from validator.settings import ValidatorSettings

from .helpers import (
    CFG,
    FakeChain,
    encode_delta,
    fix_secret,
    honest_delta,
    submission_body,
    toy_dataset,
)

VAL = Keypair.create_from_uri("//OpsValidator")
VAL2 = Keypair.create_from_uri("//OpsValidator2")
MINERS = [Keypair.create_from_uri(f"//OpsMiner{i}") for i in range(2)]


@pytest.fixture(scope="module")
def ds():
    return toy_dataset()


def _validator(tmp_path, ds, chain, kp=VAL, cfg=CFG, name="v") -> Validator:
    settings = ValidatorSettings(netuid=cfg.netuid, state_dir=tmp_path / name, port=0, poll_interval_s=0.05)
    fix_secret(tmp_path / name)
    return Validator(chain, kp, cfg, settings, ds, hotkey=kp.ss58_address)


async def _post(v: Validator, kp: Keypair, body: bytes) -> int:
    async with SignedClient(kp, timeout=10) as client:
        status, _ = await client.post(f"https://127.0.0.1:{v.server.port}", "/submit", body,
                                      receiver_hotkey=VAL.ss58_address, pinned_fingerprint=v.state.identity.fingerprint)
    return status


async def _get(v: Validator, path: str) -> tuple[int, bytes]:
    async with SignedClient(MINERS[0], timeout=10) as client:
        return await client.get(f"https://127.0.0.1:{v.server.port}", path, receiver_hotkey=None,
                                pinned_fingerprint=v.state.identity.fingerprint)


async def test_dashboard_metrics_config_and_per_miner_status(tmp_path, ds):
    chain = FakeChain(CFG.netuid, [VAL.ss58_address] + [m.ss58_address for m in MINERS], [100.0, 0, 0], tempo=5)
    v = _validator(tmp_path, ds, chain)
    await v.start()
    try:
        state = v.state.model
        honest = submission_body(MINERS[0], 1, 0, encode_delta(honest_delta(state, ds, 1)), base_hash=state.hash(), ds=ds)
        stale = submission_body(MINERS[1], 2, 0, encode_delta(honest_delta(state, ds, 2)), base_hash="ab" * 32, ds=ds)
        assert await _post(v, MINERS[0], honest) == 200
        assert await _post(v, MINERS[1], stale) == 422
        chain.block_now = CFG.blocks_per_window
        await v.tick()

        status, page = await _get(v, "/dashboard")
        assert status == 200 and b'id="loss-chart"' in page and b"<script" in page and b"src=" not in page
        status, body = await _get(v, "/dashboard/data")
        data = json.loads(body)
        assert [w["window"] for w in data["windows"]] == [0] and data["windows"][0]["val_loss"] > 0
        rows = {m["uid"]: m for m in data["miners"]}
        assert rows[1]["verdict"]["reason"] and rows[1]["verdict"]["window"] == 0 and rows[1]["ema"] is not None
        assert rows[1]["last_submission"]["outcome"] == "accepted" and rows[1]["last_submission"]["hash_agrees"]
        assert rows[2]["last_submission"]["outcome"] == "wrong_base_model"
        assert rows[2]["last_submission"]["hash_agrees"] is False
        assert data["refusals"] == {"wrong_base_model": 1} and data["validators"][0]["self"]
        assert data["timing"]["blocks_per_window"] == CFG.blocks_per_window

        status, body = await _get(v, "/status")
        assert {m["uid"] for m in json.loads(body)["miners"]} == {0, 1, 2}

        status, text = await _get(v, "/metrics")
        families = {f.name: f.samples for f in text_string_to_metric_families(text.decode())}
        outcomes = {s.labels["outcome"]: s.value for s in families["swarmtrain_validator_submissions"]
                    if s.name.endswith("_total")}
        assert outcomes == {"accepted": 1.0, "wrong_base_model": 1.0}
        assert families["swarmtrain_validator_windows_closed"][0].value == 1.0
        assert families["swarmtrain_validator_received_bytes"][0].value == len(honest) + len(stale)

        status, body = await _get(v, "/subnet-config")
        assert status == 200 and json.loads(body) == CFG.model_dump()
        assert v.state.identity.fingerprint in chain.commitments[VAL.ss58_address]
        assert CFG.config_hash() in chain.commitments[VAL.ss58_address]
    finally:
        await v.close()


async def test_nodes_with_another_config_refuse_to_start_naming_the_fields(tmp_path, ds):
    chain = FakeChain(CFG.netuid, [VAL.ss58_address, VAL2.ss58_address, MINERS[0].ss58_address], [100.0, 50.0, 0])
    lead = _validator(tmp_path, ds, chain)
    await lead.start()
    other = CFG.model_copy(update={"inner_steps": CFG.inner_steps + 2, "outer_lr": 0.7})
    try:
        second = _validator(tmp_path, ds, chain, kp=VAL2, cfg=other, name="v2")
        with pytest.raises(SubnetConfigMismatch) as refused:
            await second.start()
        await second.close()
        text = str(refused.value)
        assert f"inner_steps: yours {CFG.inner_steps + 2}, the validator's {CFG.inner_steps}" in text
        assert "outer_lr: yours 0.7, the validator's 1.5" in text and "swarmtrain subnet fetch" in text
        # a miner checks the lead the same way before its first window (Miner.check_config)
        [endpoint] = find_validators(await chain.metagraph(CFG.netuid), require_permit=False)
        async with SignedClient(MINERS[0], timeout=10) as client:
            with pytest.raises(SubnetConfigMismatch, match="inner_steps: yours"):
                await check_against(client, endpoint, other)
            await check_against(client, endpoint, CFG)  # the same config passes
    finally:
        await lead.close()


async def test_a_validator_without_stake_is_told_to_stake(tmp_path, ds, caplog):
    chain = FakeChain(CFG.netuid, [VAL.ss58_address, MINERS[0].ss58_address], [0.0, 0.0])

    async def refuse(*args, **kwargs):
        raise ChainError("set weights on netuid 7 failed", reason="NeuronNoValidatorPermit: no permit")

    chain.set_weights = refuse
    v = _validator(tmp_path, ds, chain)
    caplog.set_level(logging.INFO, logger="swarmtrain")
    await v.start()
    try:
        v.state.scores.scores[1] = MinerScore(hotkey=MINERS[0].ss58_address, ema=0.5, evidence=1.0, windows_seen=1)
        assert v.state.scores.weights()  # something to set, so the chain is asked
        await v.set_weights()
    finally:
        await v.close()
    hints = [r.getMessage() for r in caplog.records if "swarmtrain stake add --netuid 7" in r.getMessage()]
    assert len(hints) >= 2 and "holds no validator permit" in hints[-1] and "τ0.0000" in hints[-1]  # start + weights

