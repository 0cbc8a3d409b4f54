"""The published scoring rules (criteria v4), one table per rule. All fast (< 2 s)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from protocol.criteria import (
    CRITERIA_VERSION,
    DEFAULT_PARAMS,
    EARLIER,
    CriteriaParams,
    Evaluation,
    MinerScore,
    Verdict,
    criteria_hash,
    dump_scores,
    evidence_bar,
    find_copies,
    gain_bar,
    judge_window,
    load_scores,
    matches_earlier,
    median_norm,
    own_data_z,
    pooled_z,
    reference_norm,
    relative_gain,
    resends_aggregate,
    reserved_uids,
    select_for_evaluation,
    stale_first,
    top_contributors,
    update_scores,
    weights_from_scores,
)

NAN, INF = float("nan"), float("inf")


def ev(uid: int, gain: float = 0.01, own_z: float = 6.0, **kw: object) -> Evaluation:
    return Evaluation(uid, f"hk{uid}", gain=gain, own_z=own_z, **kw)  # type: ignore[arg-type]


def honest_window(n: int = 4, **extra: Evaluation) -> dict[int, Evaluation]:
    """n honest evaluations (gains .010-.013, own_z 5-8) plus the extra ones by uid."""
    evs = {u: ev(u, gain=0.010 + 0.001 * u, own_z=5.0 + u) for u in range(n)}
    evs.update({int(k): v for k, v in extra.items()})
    return evs


def verdict(uid: int, score: float, evidence: float | None = None, gain: float = 0.01) -> Verdict:
    return Verdict(uid, score, "ok" if score else "no_gain", evidence, gain, 5.0)


# ---- measurements -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [(4.0, 3.0, 0.25), (2.0, 3.0, -0.5), (0.0, 1.0, 0.0), (-1.0, -2.0, 0.0),
     (NAN, 1.0, 0.0), (4.0, NAN, 0.0), (INF, 1.0, 0.0), (4.0, INF, 0.0)],
)
def test_relative_gain_table(before, after, expected) -> None:
    assert relative_gain(before, after) == pytest.approx(expected)


def test_median_norm_ignores_unusable_norms() -> None:
    assert median_norm([1.0, 2.0, 10.0, 0.0, NAN, INF]) == 2.0
    assert median_norm([]) is None and median_norm([0.0, NAN]) is None


def test_reference_norm_is_the_previous_windows_median_when_known() -> None:
    assert reference_norm(3.5, [1.0, 2.0, 10.0]) == 3.5  # this window's norms do not move it
    for unknown in (None, 0.0, -1.0, NAN, INF):  # first window (or a damaged value): its own median
        assert reference_norm(unknown, [1.0, 2.0, 10.0, 0.0, NAN, INF]) == 2.0
    assert reference_norm(None, []) == 1.0 and reference_norm(None, [0.0]) == 1.0


def test_reserved_uids_cover_registered_and_submitting_uids() -> None:
    assert reserved_uids([0, 3], registered=10) == 10
    assert reserved_uids([0, 12], registered=10) == 13  # registered after the metagraph read
    assert reserved_uids([], registered=0) == 1


def test_stale_first_is_the_order_selection_fills_its_budget_in() -> None:
    last = {u: u % 3 for u in range(12)} | {5: -1}
    order = stale_first(range(12), last, 4, b"s")
    assert order[0] == 5 and [last.get(u, -1) for u in order] == sorted(last.get(u, -1) for u in order)
    budget = 8
    stale = budget - int(budget * DEFAULT_PARAMS.random_eval_share)
    assert set(order[:stale]) <= set(select_for_evaluation(range(12), last, budget, 4, b"s"))


def test_own_data_z_is_welch_t() -> None:
    rng = np.random.default_rng(0)
    own, rand = rng.normal(0.02, 0.01, 160), rng.normal(0.01, 0.01, 160)
    se = math.sqrt(own.var(ddof=1) / 160 + rand.var(ddof=1) / 160)
    assert own_data_z(own, rand) == pytest.approx((own.mean() - rand.mean()) / se)
    assert own_data_z(rand, own) == pytest.approx(-own_data_z(own, rand))
    assert own_data_z([1.0], [0.0, 1.0]) == 0.0  # too few samples
    assert own_data_z([1.0, NAN], [0.0, 1.0]) == 0.0
    assert math.isfinite(own_data_z([1.0, 1.0], [0.0, 0.0]))  # zero variance


def test_pooled_z_is_stouffer_over_the_last_windows() -> None:
    assert pooled_z([], 3.0) == 3.0
    assert pooled_z([2.0], 2.0) == pytest.approx(4.0 / math.sqrt(2))
    assert pooled_z([9.0, 2.0, 2.0], 2.0) == pytest.approx(6.0 / math.sqrt(3))  # z_windows = 3
    assert pooled_z([NAN, 2.0], 1.0) == pytest.approx(3.0 / math.sqrt(3))
    assert pooled_z([5.0, 5.0], 1.0, CriteriaParams(z_windows=1)) == 1.0


def test_a_steady_weak_trace_passes_where_one_window_would_not() -> None:
    evs = {u: ev(u, own_z=2.6, pooled_z=pooled_z([2.4, 2.7], 2.6)) for u in range(4)}
    evs[9] = ev(9, own_z=2.6, pooled_z=pooled_z([0.1, -0.4], 2.6))  # a lucky window of a cheat
    verdicts = judge_window(evs, ())
    assert evidence_bar(evs).informative
    assert [verdicts[u].reason for u in range(4)] == ["ok"] * 4 and verdicts[9].reason == "no_own_data"
    assert not evidence_bar({u: ev(u, own_z=2.6) for u in range(4)}).informative


# ---- one window -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "copies", "reason"),
    [
        (ev(9), (), "ok"),
        (ev(9, base_hash_ok=False), (), "wrong_base_model"),
        (ev(9, norm=0.0), (), "empty"),
        (ev(9, gain=NAN), (), "not_finite"),
        (ev(9, own_z=INF), (), "not_finite"),
        (ev(9), (9,), "copy"),
        (ev(9, gain=-0.01), (), "no_gain"),
        (ev(9, gain=0.001), (), "no_gain"),  # under 0.3 x the window's 75th percentile gain
        (ev(9, own_z=0.5), (), "no_own_data"),  # informative window, no trace of its data
        (ev(9, gain=0.2, own_z=0.5), (), "no_own_data"),  # a big gain does not excuse it
    ],
)
def test_judge_window_reasons(extra, copies, reason) -> None:
    verdicts = judge_window(honest_window(**{"9": extra}), copies)
    assert verdicts[9].reason == reason
    assert (verdicts[9].score > 0) == (reason == "ok")
    assert all(verdicts[u].reason == "ok" for u in range(4))


def test_own_data_test_counts_only_where_it_can_tell() -> None:
    early = {u: ev(u, own_z=z) for u, z in enumerate([1.1, 0.4, 3.9, -0.7])}
    bar = evidence_bar(early)
    assert not bar.informative and bar.z_top == pytest.approx(1.1)
    verdicts = judge_window(early, ())
    assert all(v.score == 1.0 and v.evidence is None for v in verdicts.values())
    late = honest_window(**{"9": ev(9, own_z=1.0)})
    bar = evidence_bar(late)
    assert bar.informative and bar.z_top == 7.0 and bar.z_pass == pytest.approx(2.5)
    verdicts = judge_window(late, ())
    assert verdicts[9].evidence == 0.0 and verdicts[0].evidence == 1.0


def test_where_the_test_counts_pay_follows_the_own_data_trace() -> None:
    evs = {u: ev(u, own_z=z) for u, z in enumerate([4.0, 6.0, 8.0, 12.0, 30.0])}
    evs[9] = ev(9, own_z=0.2)
    scores = {u: v.score for u, v in judge_window(evs, ()).items()}
    assert scores[2] == pytest.approx(1.0)  # the median passing z
    assert scores[0] == pytest.approx(0.5) and scores[3] == pytest.approx(1.5)
    assert scores[4] == pytest.approx(1.5)  # capped: score_cap
    assert scores[9] == 0.0
    early = {u: ev(u, own_z=z) for u, z in enumerate([0.5, 1.5, 3.0])}
    assert {v.score for v in judge_window(early, ()).values()} == {1.0}  # the test cannot tell yet


def test_the_pass_bar_rises_with_the_window_and_needs_a_quorum() -> None:
    strong = {u: ev(u, own_z=z) for u, z in enumerate([20.0, 18.0, 5.0, 12.0])}
    bar = evidence_bar(strong)
    assert bar.z_top == 18.0 and bar.z_pass == pytest.approx(5.4)
    assert judge_window(strong, ())[2].reason == "no_own_data"
    lone = {0: ev(0, own_z=30.0), 1: ev(1, own_z=0.1)}  # one strong miner is not a quorum
    assert not evidence_bar(lone).informative
    assert not evidence_bar(lone, CriteriaParams(evidence_quorum=3)).informative


def test_gain_bar_is_relative_to_the_window() -> None:
    evs = honest_window()
    reference = float(np.quantile([0.010, 0.011, 0.012, 0.013], 0.75))
    assert gain_bar(evs) == pytest.approx(0.3 * reference)
    assert gain_bar({0: ev(0, gain=-1.0)}) == INF  # nobody helped: nobody is useful
    early = {u: replace(e, gain=e.gain * 30) for u, e in evs.items()}
    assert gain_bar(early) == pytest.approx(30 * gain_bar(evs))  # same bar in relative terms


def test_scale_does_not_enter_the_verdict() -> None:
    evs = honest_window(**{"9": ev(9, norm=10.0), "10": ev(10, norm=1e-6)})
    verdicts = judge_window(evs, ())
    assert verdicts[9].score == verdicts[10].score == 1.0


def test_top_contributors_are_passing_uids_by_gain() -> None:
    verdicts = {1: verdict(1, 1.0, gain=0.02), 2: verdict(2, 1.0, gain=0.03),
                3: verdict(3, 0.0, gain=0.5), 4: verdict(4, 1.0, gain=0.03)}
    assert top_contributors(verdicts, 2) == [2, 4]
    assert top_contributors(verdicts, 8) == [2, 4, 1]
    assert top_contributors(verdicts, 0) == []


# ---- copies -----------------------------------------------------------------------------


def _sk(*values: float) -> np.ndarray:
    out = np.zeros(8)
    out[: len(values)] = values
    return out


@pytest.mark.parametrize(
    ("arrivals", "sketches", "expected"),
    [
        ({1: 0.0, 2: 1.0}, {1: _sk(1, 0), 2: _sk(1, 0)}, {2: 1}),  # exact copy: later one
        ({1: 1.0, 2: 0.0}, {1: _sk(1, 0), 2: _sk(1, 0)}, {1: 2}),  # arrival decides, not uid
        ({1: 0.0, 2: 0.0}, {1: _sk(1, 0), 2: _sk(1, 0)}, {2: 1}),  # tie: lower uid is original
        ({1: 0.0, 2: 1.0}, {1: _sk(1, 0), 2: _sk(0.9, 0.436)}, {2: 1}),  # noisy copy, cos .9
        ({1: 0.0, 2: 1.0}, {1: _sk(1, 0), 2: _sk(0.5, 0.866)}, {}),  # cos .5: honest-like
        ({1: 0.0, 2: 1.0, 3: 2.0}, {1: _sk(1), 2: _sk(1), 3: _sk(1)}, {2: 1, 3: 1}),
        ({1: 0.0, 2: 1.0}, {1: _sk(1, 0), 2: _sk(-1, 0)}, {}),  # sign flip is no copy (no gain)
    ],
)
def test_find_copies_table(arrivals, sketches, expected) -> None:
    assert find_copies(arrivals, sketches) == expected


def test_resends_aggregate_finds_a_top_k_of_the_aggregate() -> None:
    import torch

    from protocol.sparse import SparseTensor

    agg = {"w": SparseTensor((100,), torch.arange(0, 100, 2), torch.linspace(-1, 1, 50))}
    top = torch.tensor([0, 2, 96, 98])
    resent = {"w": SparseTensor((100,), top, torch.tensor([-0.5, -0.5, 0.5, 0.5]))}
    own = {"w": SparseTensor((100,), torch.tensor([1, 2, 3, 98]), torch.tensor([0.5, -0.5, 0.5, -0.5]))}
    assert resends_aggregate({1: resent, 2: own}, agg) == {1}
    assert resends_aggregate({1: resent}, None) == set()


def test_matches_earlier_catches_replays() -> None:
    sketches = {1: _sk(1, 0, 0), 2: _sk(0, 1, 0), 3: _sk(0, 0, 1)}
    earlier = [_sk(0.95, 0.31, 0), _sk(0, 0, -1)]
    assert matches_earlier(sketches, earlier) == {1}
    assert matches_earlier(sketches, []) == set()
    assert EARLIER < 0  # never a uid


# ---- scores over windows ----------------------------------------------------------------


def test_update_scores_ema_decays_and_evidence() -> None:
    hk = {1: "a", 2: "b", 3: "c"}
    scores = update_scores({}, 0, {1: verdict(1, 1.0, evidence=1.0)}, submitted=[1, 2], hotkeys=hk)
    assert scores[1].ema == pytest.approx(0.2) and scores[1].evidence == pytest.approx(0.75)
    scores = {u: replace(s, ema=1.0) for u, s in scores.items()}
    scores = update_scores(scores, 1, {}, submitted=[2], hotkeys=hk)
    assert scores[2].ema == pytest.approx(0.95)  # submitted, not evaluated
    assert scores[1].ema == pytest.approx(0.5)  # registered, did not submit
    assert scores[3].evidence == 0.5 and scores[3].last_evaluated == -1
    scores = update_scores(scores, 2, {2: verdict(2, 0.0, evidence=0.0)}, submitted=[2], hotkeys=hk)
    assert scores[2].ema == pytest.approx(0.76) and scores[2].evidence == pytest.approx(0.25)
    assert scores[2].recent_z == [5.0] and scores[1].recent_z == [5.0]
    scores = update_scores(scores, 3, {2: verdict(2, 1.0)}, submitted=[2], hotkeys=hk)
    scores = update_scores(scores, 4, {2: verdict(2, 1.0)}, submitted=[2], hotkeys=hk)
    assert scores[2].recent_z == [5.0, 5.0]  # the last z_windows - 1


def test_a_cheat_caught_in_informative_windows_loses_its_weight_fast() -> None:
    hk = {1: "honest", 2: "cheat"}
    scores: dict[int, MinerScore] = {}
    for w in range(6):  # nothing can tell them apart: both paid
        scores = update_scores(scores, w, {1: verdict(1, 1.0), 2: verdict(2, 1.0)}, [1, 2], hk)
    before = weights_from_scores(scores)
    assert before[1] == pytest.approx(before[2])
    for w in range(6, 10):  # the own-data test counts now
        vs = {1: verdict(1, 1.0, evidence=1.0), 2: Verdict(2, 0.0, "no_own_data", 0.0, 0.01, 0.2)}
        scores = update_scores(scores, w, vs, [1, 2], hk)
    after = weights_from_scores(scores)
    assert after[2] < 0.02 * after[1]


def test_re_registered_uid_resets_and_deregistered_uid_drops() -> None:
    scores = {1: MinerScore("old", ema=0.9, evidence=1.0, windows_seen=5, last_window=3, last_evaluated=3),
              2: MinerScore("x", ema=0.5, windows_seen=1, last_window=3, last_evaluated=3)}
    out = update_scores(scores, 4, {}, submitted=[], hotkeys={1: "new"})
    assert out[1].hotkey == "new" and out[1].ema == 0.0 and out[1].evidence == 0.5
    assert 2 not in out


def test_replaying_a_window_changes_nothing() -> None:
    hk = {1: "a"}
    once = update_scores({}, 5, {1: verdict(1, 1.0)}, [1], hk)
    assert update_scores(once, 5, {1: verdict(1, 0.0)}, [1], hk) == once
    assert update_scores(once, 4, {1: verdict(1, 0.0)}, [1], hk) == once


def test_scores_round_trip_through_json() -> None:
    scores = {3: MinerScore("hk", ema=0.25, evidence=0.75, windows_seen=2, last_window=7, last_evaluated=6,
                            recent_z=[1.5, 2.5])}
    assert load_scores(json.loads(json.dumps(dump_scores(scores)))) == scores
    with pytest.raises(ValueError, match="malformed"):
        load_scores({"1": {"hotkey": "x"}})


def test_weights_are_ema_times_evidence_normalized() -> None:
    scores = {1: MinerScore("a", ema=0.5, evidence=1.0), 2: MinerScore("b", ema=0.5, evidence=0.5),
              3: MinerScore("c", ema=0.0), 4: MinerScore("d", ema=NAN)}
    assert weights_from_scores(scores) == pytest.approx({1: 2 / 3, 2: 1 / 3})
    assert weights_from_scores({1: MinerScore("a")}) == {}


def test_selection_is_fair_over_windows() -> None:
    last: dict[int, int] = {}
    counts = dict.fromkeys(range(20), 0)
    for w in range(20):
        chosen = select_for_evaluation(range(20), last, 5, w, b"secret")
        assert len(chosen) == 5
        for uid in chosen:
            counts[uid] += 1
            last[uid] = w
    assert min(counts.values()) >= 3  # nobody is skipped for long


def test_selection_prefers_never_evaluated_and_is_deterministic() -> None:
    last = {u: 3 for u in range(10)}
    chosen = select_for_evaluation(range(12), last, 4, 4, b"s")
    assert {10, 11} <= set(chosen)
    assert chosen == select_for_evaluation(range(12), last, 4, 4, b"s")
    assert select_for_evaluation([], {}, 4, 0, b"s") == []


# ---- the published identity -------------------------------------------------------------


def test_criteria_hash_is_version_and_canonical_params() -> None:
    doc = {"params": asdict(CriteriaParams()), "version": CRITERIA_VERSION}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert criteria_hash() == hashlib.sha256(canonical).hexdigest()
    assert criteria_hash(CriteriaParams(score_alpha=0.3)) != criteria_hash()
    assert CRITERIA_VERSION == 4


@pytest.mark.parametrize(
    ("changes", "match"),
    [({"score_alpha": 1.5}, "score_alpha"), ({"gain_floor": NAN}, "finite"),
     ({"own_eval_samples": 1}, "at least 2"), ({"score_cap": 0.5}, "score_cap"), ({"evidence_quorum": 0}, "evidence_quorum"),
     ({"history_windows": -1}, "history_windows")],
)
def test_bad_params_raise(changes, match) -> None:
    with pytest.raises(ValueError, match=match):
        CriteriaParams(**changes)


# ---- the published page -----------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "criteria.md"


def _doc_params() -> dict[str, str]:
    section = DOC.read_text(encoding="utf-8").split("## Parameters", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, flags=re.M)
    return {name: value.strip() for name, value in rows}


def test_docs_parameter_table_is_the_code() -> None:
    published = _doc_params()
    code = asdict(CriteriaParams())
    assert set(published) == set(code), "docs/criteria.md lists other parameters than CriteriaParams"
    for name, value in code.items():
        assert float(published[name]) == pytest.approx(float(value)), name


def test_docs_state_the_version_and_hash() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert f"criteria version {CRITERIA_VERSION}" in text and f"CRITERIA_VERSION = {CRITERIA_VERSION}" in text
    assert criteria_hash() in text
