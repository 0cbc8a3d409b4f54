"""The published scoring rules, one table per rule. All fast (< 2 s)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, replace

import pytest
import torch

from protocol.criteria import (
    CRITERIA_VERSION,
    CriteriaParams,
    Evaluation,
    MinerScore,
    assignment_check,
    criteria_hash,
    dump_scores,
    find_copies,
    index_overlap,
    load_scores,
    relative_gain,
    select_for_evaluation,
    top_contributors,
    trained_on_assigned_data,
    update_cosine,
    update_scores,
    weights_from_scores,
    window_score,
)

NAN, INF = float("nan"), float("inf")

# An honest miner: own data 4.0 -> 3.0 (gain .25), random data 4.0 -> 3.6 (gain .1).
HONEST = Evaluation(uid=1, hotkey="hk1", own_before=4.0, own_after=3.0, random_before=4.0,
                    random_after=3.6, base_hash_ok=True, arrival=1.0)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [(4.0, 3.0, 0.25), (2.0, 3.0, -0.5), (0.0, 1.0, 0.0), (-1.0, -2.0, 0.0),
     (NAN, 1.0, 0.0), (4.0, NAN, 0.0), (INF, 1.0, 0.0), (4.0, INF, 0.0)],
)
def test_relative_gain_table(before, after, expected) -> None:
    assert relative_gain(before, after) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("changes", "is_copy", "expected"),
    [
        ({}, False, 0.1),  # honest: gain on random data (4 - 3.6) / 4
        ({"base_hash_ok": False}, False, 0.0),  # trained from the wrong model
        ({}, True, 0.0),  # a later copy of someone else's update
        ({"own_after": NAN}, False, 0.0),  # NaN loss
        ({"random_after": INF}, False, 0.0),  # diverged
        ({"own_after": 3.6}, False, 0.1),  # not its own data: scored, but assignment_check -1
        ({"own_after": 3.8}, False, 0.1),  # own gain .05 < random gain .1: idem
        ({"own_after": 3.9, "random_after": 4.2}, False, 0.0),  # own beats random; random worse
        ({"random_after": 4.0}, False, 0.0),  # no gain on random data
    ],
)
def test_window_score_table(changes, is_copy, expected) -> None:
    assert window_score(replace(HONEST, **changes), is_copy) == pytest.approx(expected)


def test_window_score_thresholds_from_params() -> None:
    # own gain .25 vs random .1: a margin of .2 is not beaten; .1 is
    assert not trained_on_assigned_data(HONEST, CriteriaParams(own_vs_random_margin=0.2))
    assert trained_on_assigned_data(HONEST, CriteriaParams(own_vs_random_margin=0.1))
    assert window_score(HONEST, False, CriteriaParams(min_relative_gain=0.1)) == 0.0
    assert window_score(HONEST, False, CriteriaParams(min_relative_gain=0.05)) > 0


# ---- copies -----------------------------------------------------------------------------


def test_index_overlap_and_cosine() -> None:
    a = {"w": torch.tensor([1, 2, 3, 4]), "b": torch.tensor([0])}
    b = {"w": torch.tensor([3, 4, 5, 6, 7, 8])}
    assert index_overlap(a, b) == pytest.approx(2 / 5)  # {3, 4} of min(5, 6)
    assert index_overlap(a, {}) == 0.0
    x = {"w": torch.tensor([1.0, 0.0]), "v": torch.tensor([0.0])}
    y = {"w": torch.tensor([1.0, 1.0])}
    assert update_cosine(x, y) == pytest.approx(1 / math.sqrt(2))
    assert update_cosine(x, {"w": torch.zeros(2)}) == 0.0


def _sim_from(pairs: dict[frozenset[int], tuple[float, float]]):
    return lambda u, v: pairs.get(frozenset((u, v)), (0.0, 0.0))


@pytest.mark.parametrize(
    ("arrivals", "pairs", "expected"),
    [
        ({1: 1.0, 2: 2.0}, {frozenset((1, 2)): (0.9, 0.99)}, {2: 1}),  # later one copies
        ({1: 5.0, 2: 2.0}, {frozenset((1, 2)): (0.9, 0.99)}, {1: 2}),  # order by arrival
        ({7: 1.0, 3: 1.0}, {frozenset((3, 7)): (1.0, 1.0)}, {7: 3}),  # tie: lower uid first
        ({1: 1.0, 2: 2.0}, {frozenset((1, 2)): (0.9, 0.5)}, {}),  # same positions, other values
        ({1: 1.0, 2: 2.0}, {frozenset((1, 2)): (0.1, 0.99)}, {}),  # low overlap
        # 3 copies 2 which copies 1: both credited to 1
        ({1: 1.0, 2: 2.0, 3: 3.0},
         {frozenset((1, 2)): (0.9, 0.99), frozenset((2, 3)): (0.9, 0.99)}, {2: 1, 3: 1}),
    ],
)
def test_find_copies_table(arrivals, pairs, expected) -> None:
    assert find_copies(arrivals, _sim_from(pairs)) == expected


def test_find_copies_accepts_a_precomputed_dict() -> None:
    assert find_copies({4: 0.0, 9: 1.0}, {(4, 9): (0.5, 0.96)}) == {9: 4}
    assert find_copies({4: 0.0, 9: 1.0}, {(9, 4): (0.5, 0.96)}) == {9: 4}


def test_copy_scores_zero_and_the_original_keeps_its_score() -> None:
    original = HONEST
    copier = replace(HONEST, uid=2, hotkey="hk2", arrival=3.0)
    copies = find_copies({1: original.arrival, 2: copier.arrival}, lambda u, v: (1.0, 1.0))
    scores = {ev.uid: window_score(ev, ev.uid in copies) for ev in (original, copier)}
    assert scores == {1: pytest.approx(0.1), 2: 0.0}


# ---- scores over windows ----------------------------------------------------------------


def test_update_scores_ema_missing_decay_and_unevaluated() -> None:
    # alpha .2, decay .75. uid 1 evaluated .5: .2*.5 + .8*.5 = .5 -> stays; with 1.0: .6
    # uid 2 missing: .4*.75 = .3; uid 3 submitted but not evaluated: unchanged .4
    prev = {1: MinerScore("hk1", 0.5, 3, 9, 9), 2: MinerScore("hk2", 0.4, 3, 9, 9),
            3: MinerScore("hk3", 0.4, 3, 9, 8)}
    hotkeys = {1: "hk1", 2: "hk2", 3: "hk3"}
    out = update_scores(prev, 10, {1: 1.0}, submitted={1, 3}, hotkeys=hotkeys)
    assert out[1].ema == pytest.approx(0.6)
    assert (out[1].windows_seen, out[1].last_evaluated, out[1].last_window) == (4, 10, 10)
    assert out[2].ema == pytest.approx(0.3)
    assert out[2].last_evaluated == 9
    assert out[3].ema == pytest.approx(0.4) and out[3].windows_seen == 3
    assert prev[1].ema == 0.5  # inputs untouched


def test_missing_miner_keeps_decaying() -> None:
    scores = {5: MinerScore("hk5", 0.8, 1, 0, 0)}
    for window in range(1, 4):
        scores = update_scores(scores, window, {}, submitted=set(), hotkeys={5: "hk5"})
    assert scores[5].ema == pytest.approx(0.8 * 0.75**3)


def test_re_registered_uid_resets_and_deregistered_uid_drops() -> None:
    prev = {1: MinerScore("old", 0.9, 10, 4, 4), 2: MinerScore("hk2", 0.5, 2, 4, 4)}
    out = update_scores(prev, 5, {1: 0.5, 7: 1.0}, submitted={1, 7}, hotkeys={1: "new"})
    assert set(out) == {1}  # uid 2 left; uid 7 unregistered: its result ignored
    assert out[1].hotkey == "new"
    assert out[1].ema == pytest.approx(0.2 * 0.5)  # from zero, not from the old .9
    assert out[1].windows_seen == 1


def test_replaying_a_window_changes_nothing_and_nan_counts_as_zero() -> None:
    first = update_scores({}, 3, {1: NAN}, submitted={1}, hotkeys={1: "hk"})
    assert first[1].ema == 0.0 and first[1].windows_seen == 1
    second = update_scores(first, 3, {1: 1.0}, submitted={1}, hotkeys={1: "hk"})
    assert second[1] == first[1]


def test_scores_round_trip_through_json() -> None:
    scores = {3: MinerScore("hk3", 0.25, 2, 7, 6), 11: MinerScore("hk11")}
    text = json.dumps(dump_scores(scores))
    assert load_scores(json.loads(text)) == scores
    with pytest.raises(ValueError, match="malformed"):
        MinerScore.from_dict({"hotkey": "x"})


# ---- selection, weights, contributors ---------------------------------------------------


def test_selection_is_fair_over_windows() -> None:
    # 10 candidates, budget 4: 3 stalest + 1 random each window; all seen within 4 windows
    candidates = list(range(10))
    last: dict[int, int] = {}
    counts = dict.fromkeys(candidates, 0)
    for window in range(4):
        picked = select_for_evaluation(candidates, last, 4, window, b"secret")
        assert len(picked) == 4 and len(set(picked)) == 4
        for uid in picked:
            last[uid] = window
            counts[uid] += 1
    assert all(c >= 1 for c in counts.values())
    assert max(counts.values()) - min(counts.values()) <= 2


def test_selection_prefers_never_evaluated_and_is_deterministic() -> None:
    last = {1: 5, 2: 6, 3: 7}
    params = CriteriaParams(random_eval_share=0.0)
    assert select_for_evaluation([1, 2, 3, 4], last, 2, 8, b"s", params) == [1, 4]
    args = ([1, 2, 3, 4, 5, 6], {}, 3, 8, b"s")
    assert select_for_evaluation(*args) == select_for_evaluation(*args)
    draws = {tuple(select_for_evaluation(range(20), {}, 3, 8, bytes([i]))) for i in range(8)}
    assert len(draws) > 1  # the seed decides ties
    assert select_for_evaluation([1, 2], {}, 0, 8, b"s") == []
    assert select_for_evaluation([1, 2], {}, 5, 8, b"s") == [1, 2]


def test_weights_from_scores_normalized() -> None:
    scores = {1: MinerScore("a", 0.3, assigned=0.5), 2: MinerScore("b", 0.1, assigned=0.5),
              3: MinerScore("c", 0.0, assigned=0.5), 4: MinerScore("d", -0.2, assigned=0.5),
              5: MinerScore("e", NAN, assigned=0.5), 6: MinerScore("f", 0.4, assigned=0.0)}
    weights = weights_from_scores(scores)
    assert weights == {1: pytest.approx(0.75), 2: pytest.approx(0.25)}
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights_from_scores({1: MinerScore("a", 0.0, assigned=1.0)}) == {}


@pytest.mark.parametrize(
    ("changes", "is_copy", "expected"),
    [
        ({}, False, 1.0),  # own gain .25 beats random gain .1
        ({"own_after": 3.6}, False, 0.0),  # equal gains: no sign it trained on its own data
        ({"own_after": 3.8}, False, 0.0),  # own gain below random gain
        ({}, True, 0.0),  # a copy
        ({"base_hash_ok": False}, False, 0.0),  # wrong base model
        ({"own_after": NAN}, False, 0.0),  # NaN loss
    ],
)
def test_assignment_check_table(changes, is_copy, expected) -> None:
    assert assignment_check(replace(HONEST, **changes), is_copy) == expected


def test_win_rate_pays_the_miner_who_mostly_wins_more_than_one_who_rarely_does() -> None:
    hotkeys = {1: "honest", 2: "elsewhere", 3: "new"}
    scores: dict[int, MinerScore] = {}
    # the honest miner wins the noisy own-vs-random test 2 windows in 3; the other 1 in 6
    for window in range(30):
        checks = {1: 0.0 if window % 3 == 2 else 1.0, 2: 1.0 if window % 6 == 0 else 0.0}
        scores = update_scores(scores, window, {1: 0.1, 2: 0.1}, {1, 2}, hotkeys, checks=checks)
    assert scores[1].assigned > 0.6 and scores[2].assigned < 0.3
    assert scores[3].assigned == 0.5  # never evaluated: no evidence either way
    weights = weights_from_scores(scores)
    assert weights[1] > 2.5 * weights[2]


def test_top_contributors() -> None:
    window_scores = {1: 0.2, 2: 0.5, 3: 0.0, 4: 0.2, 5: NAN, 6: -1.0, 7: 0.9}
    assert top_contributors(window_scores, 3) == [7, 2, 1]
    assert top_contributors(window_scores, 10) == [7, 2, 1, 4]
    assert top_contributors(window_scores, 0) == []


# ---- the published identity -------------------------------------------------------------


def test_criteria_hash_is_version_and_canonical_params() -> None:
    doc = {"params": asdict(CriteriaParams()), "version": CRITERIA_VERSION}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert criteria_hash() == hashlib.sha256(canonical).hexdigest()
    assert criteria_hash(CriteriaParams(score_alpha=0.3)) != criteria_hash()


def test_criteria_hash_golden() -> None:
    # If this fails, the published rules changed: bump CRITERIA_VERSION, update
    # docs/criteria.md, then this value.
    assert criteria_hash() == "69c6f273d2f0a48ed628a284ee2a2426360b11d892a7c67459f5f2ef365af5a0"


def test_bad_params_raise() -> None:
    with pytest.raises(ValueError, match="score_alpha"):
        CriteriaParams(score_alpha=1.5)
    with pytest.raises(ValueError, match="finite"):
        CriteriaParams(min_relative_gain=NAN)
