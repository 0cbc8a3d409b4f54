"""Batched evaluation measures what one-at-a-time evaluation measures: the same Evaluations
within fp tolerance and the same verdicts, with θ_w's part done before the close or not,
one model per pass or several (vmap); and it keeps only the aggregate's dense updates."""

from __future__ import annotations

import pytest
from bittensor.sp_core import Keypair

from node.model_state import ModelState
from protocol import codec, criteria
from protocol.aggregate_payload import decode_aggregate_sparse
from protocol.codec import decompress
from validator.aggregation import build_aggregate
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


PREVIOUS_NORM = 0.05  # the median norm of an earlier window (criteria.reference_norm)


def test_measured_on_arrival_equals_one_at_a_time_at_the_close(window, monkeypatch):
    """With the previous window's norm known, every submission is measured as it arrives
    (a few per call, least recently evaluated first) and the close measures nothing more;
    the Evaluations and verdicts are those of one-at-a-time evaluation at the close."""
    ds, state, subs, _ = window
    kwargs = {"last_evaluated": {1: 3, 2: 3}, "secret": SECRET, "previous_norm": PREVIOUS_NORM, "registered": 8}
    one = Evaluator(CFG, ds).evaluate_window(state, subs, **kwargs)
    assert one.reference_norm == PREVIOUS_NORM and one.median_norm == criteria.median_norm(s.norm for s in subs)
    ev = BatchedEvaluator(CFG, ds, memory_bytes=64 << 20)
    arrive = {k: kwargs[k] for k in ("secret", "previous_norm", "last_evaluated", "registered")}
    assert ev.prepare(state, subs[:4], limit=2, **arrive) == 2
    assert set(ev._prepared.measured) == {3, 4}  # never evaluated before uids 1 and 2
    assert ev.prepare(state, subs, **arrive) == len(subs) - 2
    measured_at_close = []
    original = BatchedEvaluator._measure
    monkeypatch.setattr(BatchedEvaluator, "_measure", lambda self, prep, st, todo, *a: (
        measured_at_close.extend(todo), original(self, prep, st, todo, *a))[1])
    many = ev.evaluate_window(state, subs, **kwargs)
    assert measured_at_close == [] and many.measured_at_close == 0 and one.measured_at_close == len(subs)
    assert {u: (v.score, v.reason) for u, v in many.verdicts.items()} == \
           {u: (v.score, v.reason) for u, v in one.verdicts.items()}
    for uid, e in one.evaluations.items():
        assert many.evaluations[uid].gain == pytest.approx(e.gain, rel=1e-4, abs=1e-7), uid
        assert many.evaluations[uid].own_z == pytest.approx(e.own_z, rel=1e-3, abs=1e-4), uid


def test_close_remeasures_what_an_unexpected_uid_or_norm_invalidates(window):
    """A submitter above the registered uids moves the random batch, another norm moves every
    scale: the close measures again and still matches one-at-a-time evaluation."""
    ds, state, subs, _ = window
    ev = BatchedEvaluator(CFG, ds)
    ev.prepare(state, subs, secret=SECRET, previous_norm=PREVIOUS_NORM, registered=4)
    assert ev._prepared.reserved == 8  # uid 7 submitted: the batch keeps clear of it as well
    gains = []
    for kwargs in ({"previous_norm": PREVIOUS_NORM, "registered": 12}, {"previous_norm": 2 * PREVIOUS_NORM, "registered": 12}):
        many = ev.evaluate_window(state, subs, last_evaluated={}, secret=SECRET, **kwargs)
        one = Evaluator(CFG, ds).evaluate_window(state, subs, last_evaluated={}, secret=SECRET, **kwargs)
        assert ev._prepared.reserved == 12 and ev._prepared.ref_norm == kwargs["previous_norm"]
        for uid, e in one.evaluations.items():
            assert many.evaluations[uid].gain == pytest.approx(e.gain, rel=1e-4, abs=1e-7), uid
        gains.append(many.evaluations[1].gain)
    assert gains[0] != pytest.approx(gains[1], rel=1e-3)  # the reference norm is what the update is measured at


def test_resending_the_last_aggregate_is_checked_on_arrival(window, monkeypatch):
    """The copy check against the last aggregate decodes every update: the batched evaluator
    does it as submissions arrive, and the close finds the same copies."""
    ds, state, subs, one = window
    earlier = {9: criteria.Verdict(9, 1.0, "ok", None, 0.01, 5.0)}  # an update nobody here sent
    _, payload = build_aggregate(state, earlier, {9: garbage_delta(state, 9)}, {9: KEYS[0].ss58_address}, CFG)
    resent = decompress(decode_aggregate_sparse(payload, state.spec), state.spec)
    header = type("H", (), {"base_model_hash": state.hash(), "window": state.window, "uid": 0,
                            "hotkey": KEYS[0].ss58_address})()
    body = encode_delta(resent)
    free_rider = StoredSubmission.summarize(header, body, codec.decode(body, state.spec, CFG.codec_config()),
                                            state.spec, arrival=9)
    window_subs = [*subs, free_rider]
    kwargs = {"last_evaluated": {}, "secret": SECRET, "previous_norm": PREVIOUS_NORM, "registered": 8}
    judge = Evaluator(CFG, ds)
    judge.note_aggregate(payload, state.spec)
    expected = judge.evaluate_window(state, window_subs, **kwargs)
    assert judge.resent_aggregate(window_subs, state.spec) == {0} and expected.verdicts[0].reason == "copy"
    ev = BatchedEvaluator(CFG, ds)
    ev.note_aggregate(payload, state.spec)
    ev.prepare(state, window_subs, secret=SECRET, previous_norm=PREVIOUS_NORM, registered=8)
    assert ev._prepared.resends == {(s.uid, s.hotkey): s.uid == 0 for s in window_subs}
    decoded = []
    monkeypatch.setattr(Evaluator, "resends", lambda self, sub, spec: decoded.append(sub.uid))
    got = ev.evaluate_window(state, window_subs, **kwargs)
    assert decoded == [] and got.copies == expected.copies
    assert {u: v.reason for u, v in got.verdicts.items()} == {u: v.reason for u, v in expected.verdicts.items()}
