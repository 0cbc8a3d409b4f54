"""Evaluation of one window's submissions against the published criteria (v3).

Every submission was summarised at intake (its norm and its similarity sketch); the
summaries find copies of earlier arrivals and of earlier windows' updates, and one
submission at a time is decoded (sparse) to test it against the last aggregate. Then the
chosen ones (``criteria.select_for_evaluation``, at most ``SubnetConfig.max_evaluations``)
are decoded and measured one at a time (one dense update alive at once), and after the
verdicts only the top-G contributors are decoded again, densely, for the aggregate.
Memory at close: the stored payloads and sketches, plus one sparse and one dense update,
plus ``top_g`` dense updates (docs/validator.md states the bound).
For each measured one: the update, rescaled to the reference norm (``criteria.reference_norm``:
the median update norm of the validator's previous window, ``previous_norm``), is applied
to θ_w, and the per-sample losses before and after are taken on a secret subset of the
miner's own assigned samples and on one batch of samples no registered or submitting uid
was assigned this window (drawn with the validator's per-window secret, shared by every
evaluated miner). Nothing of a measurement depends on the window's other submissions, so
``validator.batched_eval`` takes them as submissions arrive.
``criteria.judge_window`` turns the measurements into verdicts.

Example:
    >>> ev = Evaluator(cfg, dataset, device="cpu")
    >>> result = ev.evaluate_window(state, submissions, last_evaluated={}, secret=b"...",
    ...                             previous_norm=book.previous_norm(state.window), registered=n)
    >>> result.scores                       # uid -> 1.0 or 0.0
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from node.model_state import ModelState
from protocol import codec, criteria
from protocol.aggregate_payload import decode_aggregate_sparse
from protocol.codec import decompress
from protocol.data import Dataset
from protocol.model import Transformer, lm_loss, sample_losses
from protocol.subnet import SubnetConfig
from protocol.windows import assigned_samples, unassigned_samples
from validator.store import StoredSubmission


@dataclass
class WindowEvaluation:
    """What evaluating one window produced (all maps keyed by uid)."""

    evaluations: dict[int, criteria.Evaluation] = field(default_factory=dict)
    verdicts: dict[int, criteria.Verdict] = field(default_factory=dict)
    copies: dict[int, int] = field(default_factory=dict)  # copier -> original (EARLIER: past/aggregate)
    dense: dict[int, dict[str, Tensor]] = field(default_factory=dict)  # decoded Δ (CPU) of the top-G contributors
    bar: criteria.EvidenceBar | None = None
    reference_norm: float = 1.0  # what every measured update was rescaled to
    median_norm: float | None = None  # of this window's updates: the next window's reference
    measured_at_close: int = 0  # chosen submissions measured at the close (the rest on arrival)

    @property
    def scores(self) -> dict[int, float]:
        """uid -> window score (1.0 or 0.0) of every evaluated uid."""
        return {uid: v.score for uid, v in self.verdicts.items()}


def window_entropy(secret: bytes, window: int) -> bytes:
    """The validator's unpredictable per-window entropy: sha256(secret | window)."""
    return hashlib.sha256(b"swarmtrain/eval/v1" + secret + window.to_bytes(8, "little")).digest()


def own_eval_indices(assigned: Sequence[int], count: int, entropy: bytes, uid: int) -> list[int]:
    """A secret subset of the miner's assigned samples (all of them if fewer than ``count``)."""
    if len(assigned) <= count:
        return list(assigned)
    rng = random.Random(hashlib.sha256(entropy + uid.to_bytes(4, "little")).digest())
    return sorted(rng.sample(list(assigned), count))


@dataclass(frozen=True)
class _RandomBatch:
    """The window's shared random samples and θ_w's per-sample losses on them."""

    batch: Tensor  # (N, T+1) on the device
    before: Tensor  # (N,) losses of θ_w


class Evaluator:
    """Measures the submissions of one window; remembers sketches of earlier windows.

    The memory (``history_windows`` windows of sketches and the last aggregate's) lives in
    the process: after a restart, replays of windows before it are caught by the gain and
    own-data tests only.
    """

    def __init__(
        self, cfg: SubnetConfig, dataset: Dataset, *, device: str = "cpu",
        params: criteria.CriteriaParams = criteria.DEFAULT_PARAMS,
    ) -> None:
        self.cfg = cfg
        self.dataset = dataset
        self.device = torch.device(device)
        self.params = params
        self.population = dataset.num_samples(cfg.seq_len)
        self.history: deque[list[np.ndarray]] = deque(maxlen=max(params.history_windows, 1))
        self.last_aggregate: codec.SparseUpdate | None = None

    def note_aggregate(self, payload: bytes, spec: Mapping[str, tuple[int, ...]]) -> None:
        """Remember the last published aggregate (an update that resends it is a copy);
        an empty payload (no contributors) forgets it."""
        self.last_aggregate = decode_aggregate_sparse(payload, spec) if payload else None

    def earlier(self) -> list[np.ndarray]:
        """Sketches of the recent windows' updates: a new update must not repeat one."""
        if self.params.history_windows <= 0:
            return []
        return [s for window in list(self.history)[-self.params.history_windows:] for s in window]

    def evaluate_window(
        self, state: ModelState, subs: Sequence[StoredSubmission], *,
        last_evaluated: Mapping[int, int], secret: bytes, recent_z: Mapping[int, Sequence[float]] | None = None,
        previous_norm: float | None = None, registered: int = 0,
    ) -> WindowEvaluation:
        """Find copies, select, decode, measure and judge the submissions of ``state.window``.

        ``recent_z``: each uid's own-data z of its last evaluations (``MinerScore.recent_z``),
        pooled with this window's by ``criteria.pooled_z``. ``previous_norm``: the median
        update norm of the validator's last earlier window with updates
        (``ScoreBook.previous_norm``; None: this window's own). ``registered``: uids in the
        validator's last metagraph read (the random batch keeps clear of all of them).
        """
        window, entropy = state.window, window_entropy(secret, state.window)
        sketches = {s.uid: s.update_sketch() for s in subs}
        norms = {s.uid: s.norm for s in subs}
        out = WindowEvaluation(reference_norm=criteria.reference_norm(previous_norm, norms.values()),
                               median_norm=criteria.median_norm(norms.values()))
        out.copies = self.find_copies(subs, sketches, state.spec)
        chosen = criteria.select_for_evaluation(
            [s.uid for s in subs], last_evaluated, self.cfg.max_evaluations, window, entropy, self.params
        )
        by_uid = {s.uid: s for s in subs}
        reserved = criteria.reserved_uids(by_uid, registered)
        measured = self.measure_all(state, [by_uid[u] for u in chosen], out, entropy, reserved)
        out.evaluations = {u: replace(e, pooled_z=criteria.pooled_z((recent_z or {}).get(u, ()), e.own_z, self.params))
                           for u, e in measured.items()}
        out.verdicts = criteria.judge_window(out.evaluations, out.copies, self.params)
        out.bar = criteria.evidence_bar(out.evaluations, self.params)
        top = criteria.top_contributors(out.verdicts, self.cfg.top_g)
        out.dense = {uid: decompress(self.decode(by_uid[uid], state.spec), state.spec) for uid in top}
        self.history.append(list(sketches.values()))
        return out

    def decode(self, sub: StoredSubmission, spec: Mapping[str, tuple[int, ...]]) -> codec.SparseUpdate:
        """The update of a stored submission (its payload passed this decode at intake)."""
        return codec.decode(sub.payload, spec, self.cfg.codec_config())

    def find_copies(self, subs: Sequence[StoredSubmission], sketches: Mapping[int, np.ndarray],
                    spec: Mapping[str, tuple[int, ...]]) -> dict[int, int]:
        """copier -> original over every submission of the window (sketches: cheap)."""
        arrivals = {s.uid: float(s.arrival) for s in subs}
        copies = criteria.find_copies(arrivals, sketches, self.params)
        earlier = criteria.matches_earlier(sketches, self.earlier(), self.params)
        resent = self.resent_aggregate(subs, spec)
        for uid in sorted(earlier | resent):
            copies.setdefault(uid, criteria.EARLIER)
        return copies

    def resent_aggregate(self, subs: Sequence[StoredSubmission], spec: Mapping[str, tuple[int, ...]]) -> set[int]:
        """uids whose update resends the last aggregate; one decoded (sparse) update alive at a time."""
        if not self.last_aggregate:
            return set()
        return {s.uid for s in subs if self.resends(s, spec)}

    def resends(self, sub: StoredSubmission, spec: Mapping[str, tuple[int, ...]]) -> bool:
        """Whether ``sub``'s update resends the last aggregate (``criteria.resends_aggregate``)."""
        return bool(criteria.resends_aggregate({sub.uid: self.decode(sub, spec)}, self.last_aggregate, self.params))

    def measure_all(
        self, state: ModelState, chosen: Sequence[StoredSubmission], out: WindowEvaluation,
        entropy: bytes, reserved: int,
    ) -> dict[int, criteria.Evaluation]:
        """An ``Evaluation`` per chosen submission (``reserved``: ``criteria.reserved_uids``)."""
        if not chosen:
            return {}
        out.measured_at_close = len(chosen)
        base, work = self._models(state)
        rand = self.random_batch(base, state.window, entropy, reserved)
        base_hash = state.hash()
        return {  # one dense update alive at a time
            s.uid: self.measure(base, work, s, decompress(self.decode(s, state.spec), state.spec), s.norm,
                                out.reference_norm, state.window, entropy, rand, base_hash)
            for s in chosen
        }

    def _models(self, state: ModelState) -> tuple[Transformer, Transformer]:
        base = state.clone_model().to(self.device).eval()
        work = state.clone_model().to(self.device).eval()
        return base, work

    def random_batch(self, base: Transformer, window: int, entropy: bytes, reserved: int) -> _RandomBatch:
        """The shared random samples: none is assigned to a uid below ``reserved`` this window."""
        cfg = self.cfg
        count = min(self.params.random_eval_samples, self.population)
        indices = unassigned_samples(cfg.seed_bytes, window, count, self.population, entropy,
                                     reserved_slots=reserved * cfg.samples_per_window)
        batch = self._batch(indices)
        return _RandomBatch(batch, self.losses(base, batch))

    def own_batch(self, window: int, uid: int, entropy: bytes) -> Tensor:
        """A secret subset of ``uid``'s assigned samples, (N, seq_len+1) on the device."""
        cfg = self.cfg
        assigned = assigned_samples(cfg.seed_bytes, window, uid, cfg.samples_per_window, self.population)
        return self._batch(own_eval_indices(assigned, self.params.own_eval_samples, entropy, uid))

    def _batch(self, indices: Sequence[int]) -> Tensor:
        return self.dataset.batch(list(indices), self.cfg.seq_len).to(self.device)

    @torch.no_grad()
    def losses(self, model: Transformer, batch: Tensor) -> Tensor:
        """Per-sample losses (N,) in chunks of ``cfg.eval_samples``."""
        step = self.cfg.eval_samples
        return torch.cat([sample_losses(model, batch[i : i + step]) for i in range(0, batch.shape[0], step)])

    @torch.no_grad()
    def measure(
        self, base: Transformer, work: Transformer, sub: StoredSubmission, delta: Mapping[str, Tensor],
        norm: float, ref_norm: float, window: int, entropy: bytes, rand: _RandomBatch, base_hash: str,
    ) -> criteria.Evaluation:
        """Gain on the random batch and own-data z of θ_w − Δ·(ref_norm/|Δ|) (built in ``work``)."""
        base_ok = sub.header.base_model_hash == base_hash
        if norm <= 0:
            return criteria.Evaluation(sub.uid, sub.hotkey, gain=0.0, own_z=0.0, norm=0.0, base_hash_ok=base_ok)
        scale = ref_norm / norm
        for (name, p), q in zip(work.named_parameters(), base.parameters(), strict=True):
            p.copy_(q - delta[name].to(self.device) * scale)
        own = self.own_batch(window, sub.uid, entropy)
        own_gain = self.losses(base, own) - self.losses(work, own)
        rand_after = self.losses(work, rand.batch)
        gain = criteria.relative_gain(float(rand.before.mean()), float(rand_after.mean()))
        own_z = criteria.own_data_z(own_gain.double().cpu().tolist(), (rand.before - rand_after).double().cpu().tolist())
        return criteria.Evaluation(sub.uid, sub.hotkey, gain=gain, own_z=own_z, norm=norm, base_hash_ok=base_ok)


def validation_indices(dataset: Dataset, cfg: SubnetConfig, count: int) -> list[int]:
    """A fixed spread of validation-split samples (same every window, so losses compare)."""
    total = dataset.num_samples(cfg.seq_len, "val")
    if total <= 0:
        raise ValueError("the dataset's validation split is shorter than one sample")
    count = min(count, total)
    return [i * total // count for i in range(count)]


@torch.no_grad()
def validation_loss(model: Transformer, dataset: Dataset, cfg: SubnetConfig, indices: Sequence[int],
                    device: str = "cpu") -> float:
    """Mean LM loss on the fixed validation samples, in batches of ``cfg.eval_samples``."""
    model = model.to(device).eval()
    losses, step = [], cfg.eval_samples
    for i in range(0, len(indices), step):
        batch = dataset.batch(list(indices[i : i + step]), cfg.seq_len, "val").to(device)
        losses.append(float(lm_loss(model, batch)) * batch.shape[0])
    return sum(losses) / len(indices)
