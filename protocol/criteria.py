"""The published scoring rules: how a validator turns evaluations into scores and weights.

Pure functions over plain data (floats, dicts), so miners can read, run and check them.
The rules are explained for miners in docs/criteria.md; ``CRITERIA_VERSION`` and
``criteria_hash()`` identify them, and a validator publishes the hash on chain.

One window, for a validator: ``select_for_evaluation`` picks whom to evaluate; for each
pick the validator measures losses into an ``Evaluation``; ``find_copies`` flags later
duplicates; ``window_score`` gives each a score; ``top_contributors`` chooses whom to
aggregate; ``update_scores`` rolls scores into moving averages; ``weights_from_scores``
gives the weights set on chain.

Example:
    >>> ev = Evaluation(uid=3, hotkey="5F...", own_before=4.0, own_after=3.0,
    ...                 random_before=4.0, random_after=3.6, base_hash_ok=True, arrival=1.0)
    >>> round(window_score(ev, is_copy=False), 3)   # gain on random data: (4.0 - 3.6) / 4.0
    0.1
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

CRITERIA_VERSION = 2

# (index overlap, cosine) of two miners' updates, see ``index_overlap`` and ``update_cosine``
Similarity = tuple[float, float]
SimilaritySource = Callable[[int, int], Similarity] | Mapping[tuple[int, int], Similarity]


@dataclass(frozen=True)
class CriteriaParams:
    """The knobs of the rules; their default values are part of ``criteria_hash``.

    min_relative_gain: a window scores only if the gain on random data exceeds this.
    own_vs_random_margin: the gain on the miner's own data must beat the gain on random
        data by more than this (proof it trained on its assignment).
    copy_overlap_threshold / copy_cosine_threshold: an update sharing at least this share
        of top-k positions AND this cosine with an earlier one is a copy.
    score_alpha: EMA rate of the per-miner score.
    assigned_alpha: EMA rate of the "trained on its assigned data" win rate; pay is the
        score EMA times this win rate, because one window's own-vs-random comparison is noisy
        (early in training both gains are nearly equal), while over many windows an honest
        miner wins it at least as often as it loses and one that trains elsewhere does not.
    missing_decay: factor applied to the score of a registered miner that did not submit.
    random_eval_share: share of the evaluation budget drawn at random (the rest goes to
        the least recently evaluated), so no miner can predict it will be skipped.
    """

    min_relative_gain: float = 0.0
    own_vs_random_margin: float = 0.0
    copy_overlap_threshold: float = 0.4
    copy_cosine_threshold: float = 0.95
    score_alpha: float = 0.2
    assigned_alpha: float = 0.1
    missing_decay: float = 0.75
    random_eval_share: float = 0.25

    def __post_init__(self) -> None:
        for name in ("score_alpha", "missing_decay", "random_eval_share",
                     "copy_overlap_threshold", "copy_cosine_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not (math.isfinite(self.min_relative_gain) and math.isfinite(self.own_vs_random_margin)):
            raise ValueError("min_relative_gain and own_vs_random_margin must be finite")


DEFAULT_PARAMS = CriteriaParams()


def criteria_hash(params: CriteriaParams = DEFAULT_PARAMS) -> str:
    """sha256 hex of ``{"params": asdict(params), "version": CRITERIA_VERSION}`` as canonical
    JSON (sorted keys, no spaces)."""
    doc = {"params": asdict(params), "version": CRITERIA_VERSION}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# ---- one evaluation ---------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """What a validator measured for one miner in one window.

    Losses are mean LM losses of θ_w (before) and θ_w − Δ_miner (after) on the miner's own
    assigned samples and on random samples it could not predict. ``base_hash_ok`` says the
    submission named θ_w as its base model; ``arrival`` orders submissions (earlier wins).

    Example:
        >>> Evaluation(1, "5F...", 4.0, 3.0, 4.0, 3.5, True, 0.0).uid
        1
    """

    uid: int
    hotkey: str
    own_before: float
    own_after: float
    random_before: float
    random_after: float
    base_hash_ok: bool
    arrival: float


def relative_gain(before: float, after: float) -> float:
    """(before − after) / before; 0 when before <= 0 or either loss is not finite."""
    if not (math.isfinite(before) and math.isfinite(after)) or before <= 0:
        return 0.0
    return (before - after) / before


def _losses_finite(ev: Evaluation) -> bool:
    losses = (ev.own_before, ev.own_after, ev.random_before, ev.random_after)
    return all(math.isfinite(x) for x in losses)


def trained_on_assigned_data(ev: Evaluation, params: CriteriaParams = DEFAULT_PARAMS) -> bool:
    """The update helps the miner's own samples more than random ones (by the margin)."""
    if not _losses_finite(ev):
        return False
    own = relative_gain(ev.own_before, ev.own_after)
    rand = relative_gain(ev.random_before, ev.random_after)
    return own > rand + params.own_vs_random_margin


def window_score(ev: Evaluation, is_copy: bool, params: CriteriaParams = DEFAULT_PARAMS) -> float:
    """A miner's score for one window, in [0, 1].

    0 for a wrong base model, a non-finite loss, a copy, or a random-data gain not above
    ``min_relative_gain``; otherwise the relative loss improvement on random data. Whether it
    trained on its own data is judged over many windows by ``assignment_check``.
    """
    if not ev.base_hash_ok or is_copy or not _losses_finite(ev):
        return 0.0
    gain = relative_gain(ev.random_before, ev.random_after)
    if gain <= params.min_relative_gain:
        return 0.0
    return min(gain, 1.0)


def assignment_check(ev: Evaluation, is_copy: bool, params: CriteriaParams = DEFAULT_PARAMS) -> float:
    """1.0 if this window's update helped the miner's own data more than random data, else 0.0.

    A copy, a wrong base model or a non-finite loss counts as 0.0.
    """
    if not ev.base_hash_ok or is_copy:
        return 0.0
    return 1.0 if trained_on_assigned_data(ev, params) else 0.0


# ---- copies -----------------------------------------------------------------------------


def index_overlap(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    """Shared top-k positions over the smaller set; ``a``/``b`` map names to flat indices."""
    size_a = sum(int(torch.unique(v).numel()) for v in a.values())
    size_b = sum(int(torch.unique(v).numel()) for v in b.values())
    if size_a == 0 or size_b == 0:
        return 0.0
    shared = 0
    for name in sorted(set(a) & set(b)):
        shared += int(torch.isin(torch.unique(a[name]), torch.unique(b[name])).sum())
    return shared / min(size_a, size_b)


def update_cosine(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    """Cosine similarity of two dense updates (float64); names missing on one side are zero."""
    dot = norm_a = norm_b = 0.0
    for name in sorted(set(a) | set(b)):
        va = a[name].detach().double().flatten() if name in a else None
        vb = b[name].detach().double().flatten() if name in b else None
        if va is not None and vb is not None:
            dot += float(va @ vb)
        norm_a += float(va @ va) if va is not None else 0.0
        norm_b += float(vb @ vb) if vb is not None else 0.0
    if norm_a <= 0 or norm_b <= 0:
        return 0.0
    return dot / math.sqrt(norm_a * norm_b)


def _pair(similarity: SimilaritySource, u: int, v: int) -> Similarity:
    if callable(similarity):
        return similarity(u, v)
    return similarity.get((u, v)) or similarity.get((v, u)) or (0.0, 0.0)


def find_copies(
    arrivals: Mapping[int, float], similarity: SimilaritySource,
    params: CriteriaParams = DEFAULT_PARAMS,
) -> dict[int, int]:
    """copier uid -> original uid. Earlier arrival is the original (ties: lower uid); a
    pair is a copy when overlap >= copy_overlap_threshold and cosine >= copy_cosine_threshold.
    ``similarity`` is a callable (u, v) -> (overlap, cosine) or a dict keyed by uid pairs."""
    order = sorted(arrivals, key=lambda uid: (arrivals[uid], uid))
    copies: dict[int, int] = {}
    for k, uid in enumerate(order):
        for earlier in order[:k]:
            overlap, cosine = _pair(similarity, earlier, uid)
            if overlap >= params.copy_overlap_threshold and cosine >= params.copy_cosine_threshold:
                copies[uid] = copies.get(earlier, earlier)  # credit the first original
                break
    return copies


# ---- scores over windows ----------------------------------------------------------------


@dataclass
class MinerScore:
    """A miner's moving-average score, tied to the hotkey that holds its uid.

    Example:
        >>> MinerScore.from_dict(MinerScore("5F...", ema=0.2).to_dict()).ema
        0.2
    """

    hotkey: str
    ema: float = 0.0
    windows_seen: int = 0  # windows in which it was evaluated
    last_window: int = -1  # last window this record was updated
    last_evaluated: int = -1  # last window it was evaluated (-1: never)
    assigned: float = 0.5  # EMA of assignment_check (0/1): own-vs-random win rate, 0.5 = no evidence

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MinerScore:
        """Inverse of ``to_dict``; raises ValueError on a malformed record."""
        try:
            return cls(hotkey=str(data["hotkey"]), ema=float(data["ema"]),
                       windows_seen=int(data["windows_seen"]),
                       last_window=int(data["last_window"]),
                       last_evaluated=int(data.get("last_evaluated", -1)),
                       assigned=float(data.get("assigned", 0.5)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed miner score record: {exc}") from exc


def dump_scores(scores: Mapping[int, MinerScore]) -> dict[str, dict[str, Any]]:
    """JSON-ready form (uid keys as strings)."""
    return {str(uid): scores[uid].to_dict() for uid in sorted(scores)}


def load_scores(data: Mapping[str, Mapping[str, Any]]) -> dict[int, MinerScore]:
    """Inverse of ``dump_scores``."""
    return {int(uid): MinerScore.from_dict(record) for uid, record in data.items()}


def _ema(rate: float, value: float, prev: float) -> float:
    return rate * value + (1.0 - rate) * prev


def _advance(rec: MinerScore, window: int, result: float | None, check: float | None,
             submitted: bool, params: CriteriaParams) -> MinerScore:
    """One window's update of one record (a new object; the input is not modified)."""
    ema, seen, last_eval, assigned = rec.ema, rec.windows_seen, rec.last_evaluated, rec.assigned
    if result is not None:
        ema = _ema(params.score_alpha, result if math.isfinite(result) else 0.0, ema)
        seen, last_eval = seen + 1, window
    elif not submitted:
        ema = ema * params.missing_decay
    if check is not None:
        assigned = _ema(params.assigned_alpha, max(0.0, min(1.0, check)), assigned)
    return MinerScore(rec.hotkey, ema, seen, window, last_eval, assigned)


def update_scores(
    prev: Mapping[int, MinerScore], window: int, results: Mapping[int, float],
    submitted: Iterable[int], hotkeys: Mapping[int, str], params: CriteriaParams = DEFAULT_PARAMS,
    checks: Mapping[int, float] | None = None,
) -> dict[int, MinerScore]:
    """Scores after ``window`` for every registered uid (``hotkeys``: uid -> hotkey now).

    Evaluated uids move their EMA toward the window score; registered uids that did not
    submit decay by ``missing_decay``; submitted but unevaluated ones keep their score.
    ``checks`` (uid -> 0/1 from ``assignment_check``) move the ``assigned`` win rate. A
    uid whose hotkey changed (re-registration) starts from zero; deregistered uids drop out;
    results for unregistered uids are ignored. A record already updated for this window or
    a later one is kept as is, so replaying a window after a restart changes nothing.
    """
    submitted_set = set(submitted)
    out: dict[int, MinerScore] = {}
    for uid in sorted(hotkeys):
        rec = prev.get(uid)
        if rec is None or rec.hotkey != hotkeys[uid]:
            rec = MinerScore(hotkey=hotkeys[uid])
        if rec.last_window >= window:
            out[uid] = rec
            continue
        check = None if checks is None else checks.get(uid)
        out[uid] = _advance(rec, window, results.get(uid), check, uid in submitted_set, params)
    return out


def _tiebreak(seed: bytes, window: int, uid: int) -> bytes:
    return hashlib.sha256(seed + window.to_bytes(8, "little", signed=True)
                          + uid.to_bytes(4, "little")).digest()


def select_for_evaluation(
    candidates: Iterable[int], last_evaluated: Mapping[int, int], budget: int, window: int,
    seed: bytes, params: CriteriaParams = DEFAULT_PARAMS,
) -> list[int]:
    """Up to ``budget`` uids to evaluate this window, sorted.

    Most of the budget goes to the least recently evaluated (never = first), ties broken by
    sha256(seed, window, uid); ``random_eval_share`` of it goes to the rest in hash order.
    With a seed the miners cannot know (the validator's secret), nobody can predict a skip.
    """
    pool = sorted(set(candidates))
    if budget <= 0 or not pool:
        return []
    by_hash = {uid: _tiebreak(seed, window, uid) for uid in pool}
    random_slots = min(int(budget * params.random_eval_share), budget - 1)
    stale_first = sorted(pool, key=lambda uid: (last_evaluated.get(uid, -1), by_hash[uid]))
    chosen = stale_first[: budget - random_slots]
    rest = sorted(set(pool) - set(chosen), key=lambda uid: by_hash[uid])
    return sorted(chosen + rest[:random_slots])


def weights_from_scores(scores: Mapping[int, MinerScore]) -> dict[int, float]:
    """uid -> weight ∝ max(ema, 0) · assigned win rate, summing to 1; none positive gives ``{}``."""
    pay = {uid: s.ema * s.assigned for uid, s in scores.items()}
    positive = {uid: v for uid, v in pay.items()
                if math.isfinite(v) and v > 0 and scores[uid].ema > 0}
    total = sum(positive.values())
    if total <= 0:
        return {}
    return {uid: positive[uid] / total for uid in sorted(positive)}


def top_contributors(window_scores: Mapping[int, float], g: int) -> list[int]:
    """The ``g`` best positive, finite window scores, highest first (ties: lower uid)."""
    ranked = [(-s, uid) for uid, s in window_scores.items() if math.isfinite(s) and s > 0]
    return [uid for _, uid in sorted(ranked)[: max(g, 0)]]


__all__ = [
    "CRITERIA_VERSION", "CriteriaParams", "DEFAULT_PARAMS", "Evaluation", "MinerScore",
    "assignment_check", "criteria_hash", "dump_scores", "find_copies", "index_overlap", "load_scores",
    "relative_gain", "select_for_evaluation", "top_contributors", "trained_on_assigned_data",
    "update_cosine", "update_scores", "weights_from_scores", "window_score",
]
