"""The window loop with a fake chain: honest miners score and get weight, garbage gets zero,
followers reproduce the model from the published aggregate, and a restart keeps everything."""

from __future__ import annotations

import pytest
from bittensor.sp_core import Keypair

from node.logs import read_metrics
from node.model_state import ModelState
from node.signed_http import SignedClient
from protocol import criteria
from protocol.messages import Aggregate, CheckpointManifest, unpack_envelope
from validator.service import Validator, should_checkpoint, should_close_window, should_set_weights
from validator.settings import ValidatorSettings

from .helpers import (
    CFG,
    FakeChain,
    encode_delta,
    fix_secret,
    garbage_delta,
    honest_delta,
    submission_body,
    toy_dataset,
)

VAL = Keypair.create_from_uri("//LoopValidator")
MINERS = [Keypair.create_from_uri(f"//LoopMiner{i}") for i in range(3)]


@pytest.mark.parametrize(
    "model_w,chain_w,expected", [(0, 0, False), (0, 1, True), (3, 5, True), (5, 5, False)]
)
def test_should_close_window(model_w, chain_w, expected):
    assert should_close_window(model_w, chain_w) is expected


def test_other_predicates():
    assert should_set_weights(5, None, 20)
    assert not should_set_weights(24, 5, 20) and should_set_weights(25, 5, 20)
    assert should_checkpoint(4, 2) and not should_checkpoint(5, 2)


@pytest.fixture(scope="module")
def ds():
    return toy_dataset()


def _make(tmp_path, ds, chain) -> Validator:
    settings = ValidatorSettings(netuid=CFG.netuid, state_dir=tmp_path / "v", port=0, poll_interval_s=0.05)
    fix_secret(tmp_path / "v")
    return Validator(chain, VAL, CFG, settings, ds, hotkey=VAL.ss58_address)


async def _submit(v: Validator, kp: Keypair, uid: int, payload: bytes, ds) -> int:
    body = submission_body(kp, uid, v.state.model.window, payload, base_hash=v.state.model.hash(), ds=ds)
    async with SignedClient(kp, timeout=10) as client:
        status, _ = await client.post(
            f"https://127.0.0.1:{v.server.port}", "/submit", body,
            receiver_hotkey=VAL.ss58_address, pinned_fingerprint=v.state.identity.fingerprint,
        )
    return status


async def _fetch(v: Validator, path: str) -> tuple[int, bytes]:
    async with SignedClient(MINERS[0], timeout=10) as client:
        return await client.get(
            f"https://127.0.0.1:{v.server.port}", path, receiver_hotkey=VAL.ss58_address,
            pinned_fingerprint=v.state.identity.fingerprint,
        )


async def test_windows_scores_weights_and_restart(tmp_path, ds):
    chain = FakeChain(CFG.netuid, [VAL.ss58_address] + [m.ss58_address for m in MINERS], [100.0, 0, 0, 0], tempo=5)
    v = _make(tmp_path, ds, chain)
    follower = ModelState.initial(CFG)
    await v.start()
    try:
        for w in range(2):
            state = v.state.model
            assert state.window == w
            assert await _submit(v, MINERS[0], 1, encode_delta(honest_delta(state, ds, 1)), ds) == 200
            assert await _submit(v, MINERS[1], 2, encode_delta(honest_delta(state, ds, 2)), ds) == 200
            assert await _submit(v, MINERS[2], 3, encode_delta(garbage_delta(state, w)), ds) == 200
            await v.prepare_evaluation()  # as on every tick while the window is open
            prepared = v.evaluator._prepared
            if w == 0:  # no earlier window's norm yet: θ_w's losses only, measured at the close
                assert prepared.measured == {} and set(prepared.own_before) == {1, 2, 3}
            else:  # rescaled to window 0's median norm: measured on arrival
                assert prepared.ref_norm == v.state.scores.median_norms[0] and set(prepared.measured) == {1, 2, 3}
            norms = [s.norm for s in v.subs.for_window(w)]
            chain.block_now = (w + 1) * CFG.blocks_per_window
            await v.tick()
            assert v.state.scores.previous_norm(w + 1) == criteria.median_norm(norms)  # kept in scores.json
            status, envelope = await _fetch(v, f"/aggregate/{w}")
            assert status == 200
            header, payload = unpack_envelope(envelope, Aggregate)
            assert header.contributors and {c.uid for c in header.contributors} <= {1, 2}
            assert follower.apply_aggregate(header, payload) == v.state.model.hash()
        metrics = read_metrics(v.state.root / "metrics.jsonl")
        assert [m["window"] for m in metrics] == [0, 1]
        assert metrics[-1]["val_loss"] < metrics[0]["val_loss_before"]
        assert metrics[-1]["scores"]["3"] == 0.0 and metrics[-1]["scores"]["1"] > 0
        assert metrics[-1]["model_hash"] == follower.hash()
        # window 0 measured at its close (no earlier norm), window 1 on arrival at window 0's median
        assert [m["measured_at_close"] for m in metrics] == [3, 0]
        assert metrics[1]["reference_norm"] == v.state.scores.median_norms[0]
        assert chain.weights and set(chain.weights[-1][1]) <= {1, 2} and chain.weights[-1][1]
        assert chain.commitments[VAL.ss58_address] and chain.axons[VAL.ss58_address].startswith("127.0.0.1:")
        status, manifest_body = await _fetch(v, "/checkpoint/latest")
        manifest = CheckpointManifest.model_validate_json(manifest_body)
        assert manifest.window == 2 and manifest.model_hash == follower.hash()
        status, ckpt = await _fetch(v, f"/checkpoint/{manifest.window}")
        assert ModelState.from_bytes(ckpt, CFG).hash() == follower.hash()
        ema_before = v.state.scores.ema()
        fingerprint = v.state.identity.fingerprint
    finally:
        await v.close()

    # restart: same scores, model, certificate and checkpoint
    v2 = _make(tmp_path, ds, chain)
    await v2.start()
    try:
        assert v2.state.scores.ema() == ema_before and ema_before[1] > 0 and ema_before[3] == 0
        assert v2.state.scores.median_norms == v.state.scores.median_norms  # window 2's reference survives
        assert v2.state.model.hash() == follower.hash() and v2.state.model.window == 2
        assert v2.state.identity.fingerprint == fingerprint
        status, body = await _fetch(v2, "/checkpoint/latest")
        assert status == 200 and body == manifest_body
        status, ckpt2 = await _fetch(v2, f"/checkpoint/{manifest.window}")
        assert ckpt2 == ckpt
    finally:
        await v2.close()


async def test_missed_windows_close_empty_after_downtime(tmp_path, ds):
    chain = FakeChain(CFG.netuid, [VAL.ss58_address, MINERS[0].ss58_address], [100.0, 0])
    v = _make(tmp_path, ds, chain)
    await v.start()
    try:
        h0 = v.state.model.hash()
        chain.block_now = 3 * CFG.blocks_per_window + 1
        await v.tick()
        assert v.state.model.window == 3 and v.state.model.hash() == h0
        for w in range(3):
            header, _ = unpack_envelope(v.state.store.get_aggregate(w), Aggregate)
            assert header.contributors == () and header.next_model_hash == h0
        assert chain.weights == []  # nothing positive to set
    finally:
        await v.close()


async def test_crash_after_publish_replays_the_published_aggregate(tmp_path, ds, monkeypatch):
    chain = FakeChain(CFG.netuid, [VAL.ss58_address, MINERS[0].ss58_address], [100.0, 0])
    v = _make(tmp_path, ds, chain)
    await v.start()
    try:
        assert await _submit(v, MINERS[0], 1, encode_delta(honest_delta(v.state.model, ds, 1)), ds) == 200

        def crash() -> None:
            raise RuntimeError("simulated crash between publishing Aggregate(0) and saving θ_1")

        monkeypatch.setattr(v.state, "save_model", crash)
        chain.block_now = CFG.blocks_per_window
        with pytest.raises(RuntimeError, match="simulated crash"):
            await v.tick()
        published = v.state.store.get_aggregate(0)
        assert published is not None
    finally:
        await v.close()

    v2 = _make(tmp_path, ds, chain)
    assert v2.state.model.window == 0  # θ_1 never reached the disk
    await v2.start()
    try:
        await v2.tick()
        header, _ = unpack_envelope(published, Aggregate)
        assert v2.state.model.window == 1 and v2.state.model.hash() == header.next_model_hash
        assert v2.state.store.get_aggregate(0) == published  # not re-aggregated: history never forks
        assert [c.uid for c in header.contributors] == [1]
    finally:
        await v2.close()
