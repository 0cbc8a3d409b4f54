"""Evaluation scores honest > 0, garbage 0, a copy 0; the aggregate is reproducible bit-exactly."""

from __future__ import annotations

import hashlib

import pytest
from bittensor.sp_core import Keypair

from node.model_state import ModelState
from protocol import codec, criteria
from protocol.messages import Aggregate, pack_envelope, unpack_envelope
from protocol.similarity import SKETCH_DIM
from validator.aggregation import build_aggregate
from validator.evaluate import (
    Evaluator,
    own_eval_indices,
    validation_indices,
    validation_loss,
    window_entropy,
)
from validator.store import StoredSubmission

from .helpers import CFG, encode_delta, garbage_delta, honest_delta, toy_dataset

KEYS = [Keypair.create_from_uri(f"//Miner{i}") for i in range(5)]


@pytest.fixture(scope="module")
def ds():
    return toy_dataset()


def _stored(state: ModelState, uid: int, payload: bytes) -> StoredSubmission:
    header = type("H", (), {"base_model_hash": state.hash(), "window": state.window, "uid": uid,
                            "hotkey": KEYS[uid].ss58_address})()
    update = codec.decode(payload, state.spec, CFG.codec_config())
    return StoredSubmission.summarize(header, payload, update, state.spec)


@pytest.fixture(scope="module")
def window_result(ds):
    state = ModelState.initial(CFG)
    honest1 = encode_delta(honest_delta(state, ds, 1))
    honest2 = encode_delta(honest_delta(state, ds, 2))
    subs = [
        _stored(state, 1, honest1),
        _stored(state, 2, honest2),
        _stored(state, 3, encode_delta(garbage_delta(state))),
        _stored(state, 4, honest1),  # a copy of uid 1, arriving later
    ]
    ev = Evaluator(CFG, ds)
    return state, subs, ev.evaluate_window(state, subs, last_evaluated={}, secret=b"s" * 32)


def test_honest_positive_garbage_and_copy_zero(window_result):
    _, _, result = window_result
    assert result.scores[1] > 0 and result.scores[2] > 0, result.evaluations
    assert result.scores[3] == 0.0
    assert result.copies == {4: 1}
    assert result.scores[4] == 0.0
    honest = result.evaluations[1]
    assert honest.gain > 0 and honest.own_z > 2.5  # lowered the loss, most on its own samples
    assert result.verdicts[3].reason == "no_gain" and result.verdicts[4].reason == "copy"


def test_close_keeps_summaries_and_decodes_only_the_contributors_densely(window_result):
    """Bounded memory at close: stored submissions hold payload + sketch + norm (no decoded
    update), and only the top-G contributors come back as dense tensors."""
    _, subs, result = window_result
    assert not any(hasattr(s, "update") for s in subs)
    assert all(s.sketch.shape == (SKETCH_DIM,) and s.norm > 0 for s in subs)
    assert set(result.dense) == set(criteria.top_contributors(result.verdicts, CFG.top_g)) == {1, 2}


def test_aggregate_is_reproducible_by_every_node(window_result):
    state, subs, result = window_result
    hotkeys = {s.uid: s.hotkey for s in subs}
    header, payload = build_aggregate(state, result.verdicts, result.dense, hotkeys, CFG)
    assert [c.uid for c in header.contributors] == [1, 2] or [c.uid for c in header.contributors] == [2, 1]
    assert header.base_model_hash == state.hash() and state.window == 0  # build does not mutate
    envelope = pack_envelope(header, payload)
    nodes = [ModelState.initial(CFG) for _ in range(2)]
    for node in nodes:
        h, p = unpack_envelope(envelope, Aggregate)
        assert node.apply_aggregate(h, p) == header.next_model_hash
    assert nodes[0].hash() == nodes[1].hash() != state.hash()


def test_aggregate_improves_validation_loss(window_result, ds):
    state, subs, result = window_result
    header, payload = build_aggregate(state, result.verdicts, result.dense, {s.uid: s.hotkey for s in subs}, CFG)
    idx = validation_indices(ds, CFG, 8)
    before = validation_loss(state.clone_model(), ds, CFG, idx)
    nxt = state.copy()
    nxt.apply_aggregate(header, payload)
    assert validation_loss(nxt.clone_model(), ds, CFG, idx) < before


def test_empty_window_aggregate_keeps_model():
    state = ModelState.initial(CFG)
    header, payload = build_aggregate(state, {}, {}, {}, CFG)
    assert header.contributors == () and payload == b""
    assert header.next_model_hash == state.hash()
    assert header.payload_sha256 == hashlib.sha256(b"").hexdigest()


def test_own_eval_indices_secret_subset():
    assigned = list(range(100, 132))
    a = own_eval_indices(assigned, 4, window_entropy(b"k" * 32, 3), 1)
    b = own_eval_indices(assigned, 4, window_entropy(b"j" * 32, 3), 1)
    assert len(a) == 4 and set(a) <= set(assigned) and a != b
    assert own_eval_indices(assigned[:3], 4, b"e", 1) == assigned[:3]
