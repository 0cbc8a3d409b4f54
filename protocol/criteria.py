"""The published scoring rules (criteria v4): how a validator turns measurements into pay.

Pure functions over plain data, so miners can read, run and check them; docs/criteria.md
explains them in words and a test keeps its parameter table equal to ``CriteriaParams``.
``CRITERIA_VERSION`` and ``criteria_hash()`` identify the rules; validators publish the hash.

One window, for a validator:

1. ``select_for_evaluation`` picks whom to evaluate (least recently evaluated first, part at
   random with the validator's secret).
2. The validator measures each pick into an ``Evaluation``: the update, rescaled to the
   ``reference_norm`` (the median update norm of the validator's previous window, so scale
   never matters and each update can be measured as it arrives), is applied to θ_w; ``gain`` is the
   relative loss gain on random samples nobody could predict, ``own_z`` the Welch t of the
   per-sample gains on the miner's own assigned samples against the random ones
   (``own_data_z``): evidence it trained on its own data.
3. ``find_copies`` / ``matches_earlier`` / ``resends_aggregate`` flag updates too similar
   (``protocol.similarity``) to an earlier arrival, to an earlier window's update or to the
   last published aggregate.
4. ``judge_window`` gives each a ``Verdict``: score 1 (useful, own, original work) or 0,
   with the reason. The own-data test counts only in windows where it can tell
   (``evidence_bar``): early in training nobody's own-data gain stands out, and then
   honest miners are paid on gain alone.
5. ``update_scores`` rolls verdicts into per-miner records; ``weights_from_scores`` gives
   the weights set on chain: score EMA × own-data evidence record.

Example:
    >>> evs = {u: Evaluation(u, f"hk{u}", gain=0.01, own_z=6.0) for u in range(4)}
    >>> evs[4] = Evaluation(4, "hk4", gain=0.01, own_z=0.3)        # trained on other data
    >>> {u: v.reason for u, v in judge_window(evs, {}).items()}[4]
    'no_own_data'
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from protocol.similarity import similarity_matrix, support_similarity
from protocol.sparse import SparseTensor

CRITERIA_VERSION = 4

# Why a window scores 0 (or "ok"), in the order judge_window checks them.
REASONS = ("wrong_base_model", "empty", "not_finite", "copy", "no_gain", "no_own_data", "ok")
EARLIER = -1  # find_copies/matches_earlier: the original is an earlier window's update or aggregate


@dataclass(frozen=True)
class CriteriaParams:
    """The knobs of the rules; their values are part of ``criteria_hash`` (docs/criteria.md).

    own_eval_samples / random_eval_samples: samples per evaluated miner from its own
        assignment (a secret subset) and from the window's unassigned samples (shared by
        every miner of the window); more samples give the own-data test more power.
    gain_quantile / gain_floor: an update is useful when its random-data gain is at least
        ``gain_floor`` × the ``gain_quantile`` quantile of the window's positive gains.
    z_windows: the own-data test reads the *pooled* z of a miner's last ``z_windows``
        evaluations, this one included: ``(z_1 + … + z_n) / sqrt(n)`` (Stouffer's method), so
        a weak but steady trace adds up while one noisy window does not decide.
    evidence_quorum / z_informative: the own-data test counts in a window only when the
        ``evidence_quorum``-th largest pooled z reaches ``z_informative``.
    z_min / z_relative: then an update passes when its pooled z is at least
        ``max(z_min, z_relative × that z)``.
    evidence_alpha / evidence_prior: EMA rate of the pass (1) / fail (0) record over
        informative windows, and its value for a new hotkey (no evidence yet).
    score_cap: where the own-data test counts, a passing update scores its pooled z over the
        median pooled z of the window's passing updates, at most ``score_cap`` (elsewhere 1):
        pay follows how much of its own data an update bears the trace of.
    copy_similarity: similarity at or above which an update is a copy of an earlier one.
    aggregate_similarity: ``support_similarity`` with the last published aggregate at or
        above which an update is that aggregate resent (free-riding).
    history_windows: how many earlier windows' updates (and the last aggregate) a new
        update is compared with (stale replays, free-riding on the aggregate).
    score_alpha: EMA rate of the per-miner score of 0/1 window verdicts.
    missing_decay: factor on the score of a registered miner that did not submit.
    unevaluated_decay: factor on the score of a miner that submitted but was not evaluated.
    random_eval_share: share of the evaluation budget drawn at random (the rest goes to the
        least recently evaluated), so no miner can predict it will be skipped.
    """

    own_eval_samples: int = 160
    random_eval_samples: int = 160
    z_windows: int = 3
    gain_quantile: float = 0.75
    gain_floor: float = 0.3
    evidence_quorum: int = 2
    z_informative: float = 4.0
    z_min: float = 2.5
    z_relative: float = 0.3
    evidence_alpha: float = 0.5
    evidence_prior: float = 0.5
    score_cap: float = 1.5
    copy_similarity: float = 0.6
    aggregate_similarity: float = 0.85
    history_windows: int = 3
    score_alpha: float = 0.2
    missing_decay: float = 0.5
    unevaluated_decay: float = 0.95
    random_eval_share: float = 0.25

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value):
                raise ValueError(f"{f.name} must be finite, got {value}")
        unit = ("gain_quantile", "gain_floor", "z_relative", "evidence_alpha", "evidence_prior",
                "copy_similarity", "aggregate_similarity", "score_alpha", "missing_decay", "unevaluated_decay", "random_eval_share")
        for name in unit:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if min(self.own_eval_samples, self.random_eval_samples) < 2:
            raise ValueError("own_eval_samples and random_eval_samples must be at least 2")
        if self.score_cap < 1.0:
            raise ValueError(f"score_cap must be >= 1, got {self.score_cap}")
        if self.evidence_quorum < 1 or self.z_windows < 1 or self.history_windows < 0:
            raise ValueError("evidence_quorum and z_windows must be >= 1, history_windows >= 0")


DEFAULT_PARAMS = CriteriaParams()


def criteria_hash(params: CriteriaParams = DEFAULT_PARAMS) -> str:
    """sha256 hex of ``{"params": asdict(params), "version": CRITERIA_VERSION}`` as canonical
    JSON (sorted keys, no spaces)."""
    doc = {"params": asdict(params), "version": CRITERIA_VERSION}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# ---- measurements -----------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """What a validator measured for one miner in one window.

    ``gain``: (L_before − L_after) / L_before on the window's random samples, the update
    rescaled to the reference norm. ``own_z``: ``own_data_z`` of the per-sample gains.
    ``norm``: the update's norm as sent (0 = empty). ``base_hash_ok``: it named θ_w.
    ``pooled_z``: ``pooled_z`` over the miner's recent evaluations and this one (None: this
    window's ``own_z`` alone).

    Example:
        >>> Evaluation(1, "5F...", gain=0.02, own_z=5.0).uid
        1
    """

    uid: int
    hotkey: str
    gain: float
    own_z: float
    norm: float = 1.0
    base_hash_ok: bool = True
    pooled_z: float | None = None

    @property
    def evidence_z(self) -> float:
        """The z the own-data test reads: pooled where known, else this window's."""
        return self.own_z if self.pooled_z is None else self.pooled_z


def relative_gain(before: float, after: float) -> float:
    """(before − after) / before; 0 when before <= 0 or either loss is not finite."""
    if not (math.isfinite(before) and math.isfinite(after)) or before <= 0:
        return 0.0
    return (before - after) / before


def median_norm(norms: Iterable[float]) -> float | None:
    """The median of a window's non-zero finite update norms (None if there are none)."""
    usable = [n for n in norms if math.isfinite(n) and n > 0]
    return statistics.median(usable) if usable else None


def reference_norm(previous: float | None, norms: Iterable[float]) -> float:
    """The norm every update of a window is rescaled to before it is measured.

    ``previous``: the ``median_norm`` of the last earlier window in which the validator
    received usable updates, so every update can be measured as soon as it arrives. In a
    validator's first such window (None) it is this window's own ``median_norm(norms)``,
    known only at its close; 1.0 if there is none either.

    Example:
        >>> reference_norm(2.0, [1.0, 5.0]), reference_norm(None, [1.0, 5.0]), reference_norm(None, [])
        (2.0, 3.0, 1.0)
    """
    if previous is not None and math.isfinite(previous) and previous > 0:
        return previous
    own = median_norm(norms)
    return 1.0 if own is None else own


def own_data_z(own_gains: Sequence[float], random_gains: Sequence[float]) -> float:
    """Welch's t of mean(own_gains) − mean(random_gains) (per-sample loss gains).

    Large when the update lowered the loss of the miner's own samples more than that of
    samples it never saw: the trace training leaves on its data. 0 if either side has
    fewer than 2 samples, ±inf-free (a zero variance counts as a tiny one).
    """
    if len(own_gains) < 2 or len(random_gains) < 2:
        return 0.0
    a, b = np.asarray(own_gains, dtype=np.float64), np.asarray(random_gains, dtype=np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return 0.0
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return float((a.mean() - b.mean()) / max(se, 1e-12))


def pooled_z(recent: Sequence[float], own_z: float, params: CriteriaParams = DEFAULT_PARAMS) -> float:
    """Stouffer's pooled z of ``own_z`` and the last ``z_windows - 1`` of ``recent`` (oldest
    first): their sum over the square root of their count. Non-finite values count as 0."""
    keep = list(recent)[-(params.z_windows - 1):] if params.z_windows > 1 else []
    values = [*keep, own_z]
    finite = [z if math.isfinite(z) else 0.0 for z in values]
    return sum(finite) / math.sqrt(len(finite))


# ---- copies -----------------------------------------------------------------------------


def find_copies(
    arrivals: Mapping[int, float], sketches: Mapping[int, np.ndarray],
    params: CriteriaParams = DEFAULT_PARAMS,
) -> dict[int, int]:
    """copier uid -> original uid within one window: similarity >= ``copy_similarity``
    with an update that arrived earlier (ties: lower uid first); chains credit the first."""
    order = sorted(arrivals, key=lambda uid: (arrivals[uid], uid))
    sims = similarity_matrix([sketches[u] for u in order], [sketches[u] for u in order])
    alike = np.tril(sims >= params.copy_similarity, k=-1)  # [k, j]: k is alike to an earlier j
    firsts = alike.argmax(axis=1)
    copies: dict[int, int] = {}
    for k in np.flatnonzero(alike.any(axis=1)).tolist():
        j = int(firsts[k])
        copies[order[k]] = copies.get(order[j], order[j])
    return copies


def matches_earlier(
    sketches: Mapping[int, np.ndarray], earlier: Sequence[np.ndarray],
    params: CriteriaParams = DEFAULT_PARAMS,
) -> set[int]:
    """uids whose update is at least ``copy_similarity`` alike to one of ``earlier``
    (updates of the last ``history_windows`` windows and the last published aggregate)."""
    uids = sorted(sketches)
    sims = similarity_matrix([sketches[u] for u in uids], list(earlier))
    return {u for u, row in zip(uids, sims, strict=True) if row.size and row.max() >= params.copy_similarity}


def resends_aggregate(
    updates: Mapping[int, Mapping[str, SparseTensor]], aggregate: Mapping[str, SparseTensor] | None,
    params: CriteriaParams = DEFAULT_PARAMS,
) -> set[int]:
    """uids whose update is the last published aggregate resent: ``support_similarity`` with
    it at or above ``aggregate_similarity`` (free-riding)."""
    if not aggregate:
        return set()
    return {u for u, up in updates.items() if support_similarity(up, aggregate) >= params.aggregate_similarity}


# ---- one window's verdicts --------------------------------------------------------------


@dataclass(frozen=True)
class EvidenceBar:
    """Whether the own-data test counts this window, and the ``own_z`` an update needs."""

    informative: bool
    z_top: float  # the evidence_quorum-th largest own_z of the window
    z_pass: float


@dataclass(frozen=True)
class Verdict:
    """One evaluated miner's window: ``score`` (0 unless ``reason`` is "ok"; see
    ``judge_window``), ``reason`` from ``REASONS``, ``evidence`` 1/0 where the own-data test
    counted (None elsewhere)."""

    uid: int
    score: float
    reason: str
    evidence: float | None
    gain: float
    own_z: float


def evidence_bar(evals: Mapping[int, Evaluation], params: CriteriaParams = DEFAULT_PARAMS) -> EvidenceBar:
    """The test counts when ``evidence_quorum`` updates show ``own_z >= z_informative``."""
    zs = sorted((e.evidence_z for e in evals.values() if math.isfinite(e.evidence_z)), reverse=True)
    k = int(params.evidence_quorum)
    z_top = zs[k - 1] if len(zs) >= k else 0.0
    return EvidenceBar(z_top >= params.z_informative, z_top, max(params.z_min, params.z_relative * z_top))


def gain_bar(evals: Mapping[int, Evaluation], params: CriteriaParams = DEFAULT_PARAMS) -> float:
    """The least random-data gain that counts as useful this window (> 0 always)."""
    gains = sorted(e.gain for e in evals.values() if math.isfinite(e.gain) and e.gain > 0)
    if not gains:
        return math.inf
    reference = float(np.quantile(np.asarray(gains), params.gain_quantile))
    return max(params.gain_floor * reference, 1e-12)


def _reason(ev: Evaluation, copied: bool, useful_at: float, bar: EvidenceBar) -> str:
    if not ev.base_hash_ok:
        return "wrong_base_model"
    if ev.norm <= 0:
        return "empty"
    if not (math.isfinite(ev.gain) and math.isfinite(ev.own_z) and math.isfinite(ev.norm)):
        return "not_finite"
    if copied:
        return "copy"
    if ev.gain < useful_at:
        return "no_gain"
    if bar.informative and ev.evidence_z < bar.z_pass:
        return "no_own_data"
    return "ok"


def judge_window(
    evals: Mapping[int, Evaluation], copies: Mapping[int, int] | Iterable[int],
    params: CriteriaParams = DEFAULT_PARAMS,
) -> dict[int, Verdict]:
    """uid -> Verdict for every evaluated uid (``copies``: uids flagged as copies)."""
    copied = set(copies)
    bar, useful_at = evidence_bar(evals, params), gain_bar(evals, params)
    reasons = {uid: _reason(evals[uid], uid in copied, useful_at, bar) for uid in sorted(evals)}
    scale = _score_scale(evals, reasons, bar)
    out: dict[int, Verdict] = {}
    for uid, reason in reasons.items():
        ev, evidence, score = evals[uid], None, 0.0
        if bar.informative and reason in ("ok", "no_own_data", "copy"):
            evidence = 1.0 if reason == "ok" else 0.0
        if reason == "ok":
            score = min(params.score_cap, ev.evidence_z / scale) if scale else 1.0
        out[uid] = Verdict(uid, score, reason, evidence, ev.gain, ev.own_z)
    return out


def _score_scale(evals: Mapping[int, Evaluation], reasons: Mapping[int, str], bar: EvidenceBar) -> float:
    """The median pooled z of the passing updates where the own-data test counts, else 0."""
    passing = [evals[u].evidence_z for u, r in reasons.items() if r == "ok"]
    return statistics.median(passing) if bar.informative and passing else 0.0


def top_contributors(verdicts: Mapping[int, Verdict], g: int) -> list[int]:
    """Up to ``g`` uids scored 1 this window, highest gain first (ties: lower uid)."""
    ranked = sorted((-v.gain, uid) for uid, v in verdicts.items() if v.score > 0)
    return [uid for _, uid in ranked[: max(g, 0)]]


# ---- scores over windows ----------------------------------------------------------------


@dataclass
class MinerScore:
    """A miner's record, tied to the hotkey that holds its uid.

    ``ema``: moving average of its 0/1 window scores. ``evidence``: moving average of its
    own-data test results in informative windows (``evidence_prior`` until the first).
    ``recent_z``: its own-data z of its last evaluations (oldest first, for ``pooled_z``).

    Example:
        >>> MinerScore.from_dict(MinerScore("5F...", ema=0.2).to_dict()).ema
        0.2
    """

    hotkey: str
    ema: float = 0.0
    evidence: float = DEFAULT_PARAMS.evidence_prior
    windows_seen: int = 0  # windows in which it was evaluated
    last_window: int = -1  # last window this record was updated
    last_evaluated: int = -1  # last window it was evaluated (-1: never)
    recent_z: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MinerScore:
        """Inverse of ``to_dict``; raises ValueError on a malformed record."""
        try:
            return cls(hotkey=str(data["hotkey"]), ema=float(data["ema"]),
                       evidence=float(data["evidence"]), windows_seen=int(data["windows_seen"]),
                       last_window=int(data["last_window"]), last_evaluated=int(data["last_evaluated"]),
                       recent_z=[float(z) for z in data["recent_z"]])
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


def _advance(rec: MinerScore, window: int, verdict: Verdict | None, submitted: bool,
             params: CriteriaParams) -> MinerScore:
    """One window's update of one record (a new object; the input is not modified)."""
    ema, evidence, seen, last_eval = rec.ema, rec.evidence, rec.windows_seen, rec.last_evaluated
    recent = list(rec.recent_z)
    if verdict is not None:
        ema = _ema(params.score_alpha, verdict.score, ema)
        if verdict.evidence is not None:
            evidence = _ema(params.evidence_alpha, verdict.evidence, evidence)
        seen, last_eval = seen + 1, window
        if math.isfinite(verdict.own_z):
            recent = [*recent, verdict.own_z][-(params.z_windows - 1):] if params.z_windows > 1 else []
    elif submitted:
        ema *= params.unevaluated_decay
    else:
        ema *= params.missing_decay
    return MinerScore(rec.hotkey, ema, evidence, seen, window, last_eval, recent)


def update_scores(
    prev: Mapping[int, MinerScore], window: int, verdicts: Mapping[int, Verdict],
    submitted: Iterable[int], hotkeys: Mapping[int, str], params: CriteriaParams = DEFAULT_PARAMS,
) -> dict[int, MinerScore]:
    """Records after ``window`` for every registered uid (``hotkeys``: uid -> hotkey now).

    Evaluated uids move their EMA toward the verdict's score (and their evidence record
    where the own-data test counted); uids that submitted but were not evaluated decay by
    ``unevaluated_decay``, registered uids that did not submit by ``missing_decay``. A uid
    whose hotkey changed (re-registration) starts afresh; deregistered uids drop out;
    verdicts for unregistered uids are ignored. A record already updated for this window
    or a later one is kept as is, so replaying a window after a restart changes nothing.
    """
    submitted_set = set(submitted)
    out: dict[int, MinerScore] = {}
    for uid in sorted(hotkeys):
        rec = prev.get(uid)
        if rec is None or rec.hotkey != hotkeys[uid]:
            rec = MinerScore(hotkey=hotkeys[uid], evidence=params.evidence_prior)
        if rec.last_window >= window:
            out[uid] = rec
            continue
        out[uid] = _advance(rec, window, verdicts.get(uid), uid in submitted_set, params)
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
    chosen = stale_first(pool, last_evaluated, window, seed)[: budget - random_slots]
    rest = sorted(set(pool) - set(chosen), key=lambda uid: by_hash[uid])
    return sorted(chosen + rest[:random_slots])


def reserved_uids(submitted: Iterable[int], registered: int) -> int:
    """How many uids (0 … n−1) the window's random batch keeps clear of: every uid registered
    when the validator last read the metagraph and every uid that submitted, so the batch
    holds no sample anyone who could submit was assigned, and it is fixed before the close.

    Example:
        >>> reserved_uids([3, 7], registered=6), reserved_uids([], registered=0)
        (8, 1)
    """
    return max([registered, 1, *(uid + 1 for uid in submitted)])


def stale_first(candidates: Iterable[int], last_evaluated: Mapping[int, int], window: int,
                seed: bytes) -> list[int]:
    """``candidates`` least recently evaluated first (never = first), ties in
    sha256(seed, window, uid) order: the order ``select_for_evaluation`` fills most of its
    budget in (and a validator measures arrivals in)."""
    pool = set(candidates)
    return sorted(pool, key=lambda uid: (last_evaluated.get(uid, -1), _tiebreak(seed, window, uid)))


def weights_from_scores(scores: Mapping[int, MinerScore]) -> dict[int, float]:
    """uid -> weight ∝ ema × evidence, summing to 1; none positive gives ``{}``."""
    pay = {uid: s.ema * s.evidence for uid, s in scores.items()}
    positive = {uid: v for uid, v in pay.items() if math.isfinite(v) and v > 0}
    total = sum(positive.values())
    if total <= 0:
        return {}
    return {uid: positive[uid] / total for uid in sorted(positive)}


__all__ = [
    "CRITERIA_VERSION", "CriteriaParams", "DEFAULT_PARAMS", "EARLIER", "Evaluation", "EvidenceBar",
    "MinerScore", "REASONS", "Verdict", "criteria_hash", "dump_scores", "evidence_bar", "find_copies",
    "gain_bar", "judge_window", "load_scores", "matches_earlier", "median_norm", "own_data_z", "pooled_z",
    "reference_norm", "relative_gain", "resends_aggregate", "reserved_uids", "select_for_evaluation", "stale_first",
    "top_contributors", "update_scores", "weights_from_scores",
]
