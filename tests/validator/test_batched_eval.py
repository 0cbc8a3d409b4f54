"""Batched evaluation measures what one-at-a-time evaluation measures: the same Evaluations
within fp tolerance and the same verdicts, with θ_w's part done before the close or not,
one model per pass or several (vmap); and it keeps only the aggregate's dense updates."""

from __future__ import annotations

import pytest
from bittensor.sp_core import Keypair

from node.model_state import ModelState
from protocol import codec, criteria
from validator.batched_eval import BatchedEvaluator
from validator.evaluate import Evaluator
from validator.store import StoredSubmission

from .helpers import CFG, encode_delta, garbage_delta, honest_delta, toy_dataset

KEYS = [Keypair.create_from_uri(f"//Batched{i}") for i in range(8)]
SECRET = b"b" * 32


@pytest.fixture(scope="module")
def window():
    ds = toy_dataset()
    state = ModelState.initial(CFG)

    def stored(uid: int, payload: bytes, base_hash: str | None = None) -> StoredSubmission:
        header = type("H", (), {"base_model_hash": base_hash or state.hash(), "window": state.window, "uid": uid,
                                "hotkey": KEYS[uid].ss58_address})()
        update = codec.decode(payload, state.spec, CFG.codec_config())
        return StoredSubmission.summarize(header, payload, update, state.spec, arrival=uid)

    honest = {uid: encode_delta(honest_delta(state, ds, uid)) for uid in (1, 2, 3)}
    zero = encode_delta({n: 0 * p for n, p in state.params().items()})
    subs = [stored(1, honest[1]), stored(2, honest[2]), stored(3, honest[3]),
            stored(4, encode_delta(garbage_delta(state))), stored(5, honest[2], base_hash="f" * 64),
            stored(6, honest[1]), stored(7, zero)]
    return ds, state, subs, evaluate(Evaluator(CFG, ds), state, subs)


def evaluate(ev: Evaluator, state: ModelState, subs: list[StoredSubmission]):
    return ev.evaluate_window(state, subs, last_evaluated={}, secret=SECRET)


@pytest.mark.parametrize(("models_per_pass", "prepare"), [(1, True), (3, False)])
def test_same_evaluations_and_verdicts_as_one_at_a_time(window, models_per_pass, prepare):
    ds, state, subs, one = window
    batched = BatchedEvaluator(CFG, ds, models_per_pass=models_per_pass, memory_bytes=64 << 20)
    if prepare:  # θ_w's part while the submissions arrive, in two installments
        assert batched.prepare(state, subs[:3], secret=SECRET) == 3
        assert batched.prepare(state, subs, secret=SECRET, limit=2) == 2
    many = evaluate(batched, state, subs)
    assert set(many.evaluations) == set(one.evaluations) == {s.uid for s in subs}
    for uid, e in one.evaluations.items():
        b = many.evaluations[uid]
        assert (b.norm, b.base_hash_ok, b.hotkey) == (e.norm, e.base_hash_ok, e.hotkey)
        assert b.gain == pytest.approx(e.gain, rel=1e-4, abs=1e-7), uid
        assert b.own_z == pytest.approx(e.own_z, rel=1e-3, abs=1e-4), uid
        assert b.pooled_z == pytest.approx(e.pooled_z, rel=1e-3, abs=1e-4), uid
    assert {u: (v.score, v.reason) for u, v in many.verdicts.items()} == \
           {u: (v.score, v.reason) for u, v in one.verdicts.items()}
    # the scenario has every kind of verdict, so equality above means something
    reasons = {v.reason for v in one.verdicts.values()}
    assert {"ok", "copy", "wrong_base_model", "empty"} <= reasons, one.verdicts
    assert many.copies == one.copies
    # only the aggregate's contributors stay decoded; they are the same tensors
    top = criteria.top_contributors(one.verdicts, CFG.top_g)
    assert sorted(many.dense) == sorted(top)
    for uid in top:
        for name, tensor in one.dense[uid].items():
            assert many.dense[uid][name].equal(tensor)


def test_prepared_work_is_dropped_for_a_new_window(window):
    ds, state, subs, _ = window
    ev = BatchedEvaluator(CFG, ds)
    ev.prepare(state, subs, secret=SECRET)
    later = state.copy()
    later.window += 1
    assert ev.prepare(later, subs[:2], secret=SECRET) == 2  # nothing of window 0 reused
    assert ev._prepared.window == later.window
