"""Evaluation of one window's submissions against the published criteria.

For each evaluated miner: the LM loss of θ_w and of θ_w − Δ_miner on a batch of its own
assigned samples and on a batch of random samples it could not predict (drawn with the
validator's per-window secret). Copies are found by top-k index overlap and cosine of
the decoded updates, earlier arrival winning. Cost per window is bounded by
``SubnetConfig.max_evaluations`` (``criteria.select_for_evaluation``).

Example:
    >>> ev = Evaluator(cfg, dataset, device="cpu")
    >>> result = ev.evaluate_window(state, submissions, last_evaluated={}, secret=b"...")
    >>> result.scores                       # uid -> window score in [0, 1]
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from node.model_state import ModelState
from protocol import codec, criteria
from protocol.codec import decompress
from protocol.data import TokenDataset
from protocol.model import Transformer, lm_loss
from protocol.subnet import SubnetConfig
from protocol.windows import assigned_samples, random_samples
from validator.store import StoredSubmission


@dataclass
class WindowEvaluation:
    """What evaluating one window produced (all maps keyed by uid)."""

    evaluations: dict[int, criteria.Evaluation] = field(default_factory=dict)
    copies: dict[int, int] = field(default_factory=dict)  # copier -> original
    scores: dict[int, float] = field(default_factory=dict)  # window score of evaluated uids
    checks: dict[int, float] = field(default_factory=dict)  # ±1 criteria.assignment_check
    dense: dict[int, dict[str, Tensor]] = field(default_factory=dict)  # decoded Δ (CPU) of submitters


def window_entropy(secret: bytes, window: int) -> bytes:
    """The validator's unpredictable per-window entropy: sha256(secret | window)."""
    return hashlib.sha256(b"swarmtrain/eval/v1" + secret + window.to_bytes(8, "little")).digest()


def own_eval_indices(assigned: Sequence[int], count: int, entropy: bytes, uid: int) -> list[int]:
    """A secret subset of the miner's assigned samples (all of them if fewer than ``count``)."""
    if len(assigned) <= count:
        return list(assigned)
    rng = random.Random(hashlib.sha256(entropy + uid.to_bytes(4, "little")).digest())
    return sorted(rng.sample(list(assigned), count))


class Evaluator:
    """Measures losses for submissions of one window (model copies live on ``device``)."""

    def __init__(
        self, cfg: SubnetConfig, dataset: TokenDataset, *, device: str = "cpu",
        params: criteria.CriteriaParams = criteria.DEFAULT_PARAMS,
    ) -> None:
        self.cfg = cfg
        self.dataset = dataset
        self.device = torch.device(device)
        self.params = params
        self.population = dataset.num_samples(cfg.seq_len)

    def evaluate_window(
        self, state: ModelState, subs: Sequence[StoredSubmission], *,
        last_evaluated: Mapping[int, int], secret: bytes,
    ) -> WindowEvaluation:
        """Select, decode, detect copies, measure and score the submissions of ``state.window``."""
        window, entropy = state.window, window_entropy(secret, state.window)
        out = WindowEvaluation(dense={s.uid: decompress(s.update, state.spec) for s in subs})
        out.copies = self.find_copies(subs)
        chosen = criteria.select_for_evaluation(
            [s.uid for s in subs], last_evaluated, self.cfg.max_evaluations, window, entropy, self.params
        )
        by_uid = {s.uid: s for s in subs}
        base, work = self._models(state)
        for uid in chosen:
            ev = self.measure(base, work, by_uid[uid], out.dense[uid], window, entropy, state.hash())
            out.evaluations[uid] = ev
            out.scores[uid] = criteria.window_score(ev, uid in out.copies, self.params)
            out.checks[uid] = criteria.assignment_check(ev, uid in out.copies, self.params)
        return out

    def find_copies(self, subs: Sequence[StoredSubmission]) -> dict[int, int]:
        """copier uid -> original uid, over every submission of the window (sparse, cheap)."""
        updates = {s.uid: s.update for s in subs}
        cache: dict[tuple[int, int], criteria.Similarity] = {}

        def similarity(a: int, b: int) -> criteria.Similarity:
            if (a, b) not in cache:
                overlap = codec.index_overlap(updates[a], updates[b])
                # cosine only where the overlap already looks suspicious
                cos = codec.cosine(updates[a], updates[b]) if overlap >= self.params.copy_overlap_threshold else 0.0
                cache[(a, b)] = (overlap, cos)
            return cache[(a, b)]

        arrivals = {s.uid: float(s.arrival) for s in subs}
        return criteria.find_copies(arrivals, similarity, self.params)

    def _models(self, state: ModelState) -> tuple[Transformer, Transformer]:
        base = state.clone_model().to(self.device).eval()
        work = state.clone_model().to(self.device).eval()
        return base, work

    def batches(self, window: int, uid: int, entropy: bytes) -> tuple[Tensor, Tensor]:
        """(own batch, random batch) for ``uid``, each (B, seq_len+1) on the device."""
        cfg = self.cfg
        assigned = assigned_samples(cfg.seed_bytes, window, uid, cfg.samples_per_window, self.population)
        own = own_eval_indices(assigned, cfg.eval_samples, entropy, uid)
        rand = random_samples(
            cfg.seed_bytes, window, uid, cfg.eval_samples, self.population, entropy=entropy,
            assigned_count=cfg.samples_per_window,
        )
        return self._batch(own), self._batch(rand)

    def _batch(self, indices: Sequence[int]) -> Tensor:
        return self.dataset.batch(list(indices), self.cfg.seq_len).to(self.device)

    @torch.no_grad()
    def measure(
        self, base: Transformer, work: Transformer, sub: StoredSubmission, delta: Mapping[str, Tensor],
        window: int, entropy: bytes, base_hash: str,
    ) -> criteria.Evaluation:
        """Losses of θ_w (``base``) and θ_w − Δ (built in ``work``) on own and random data."""
        own, rand = self.batches(window, sub.uid, entropy)
        for (name, p), q in zip(work.named_parameters(), base.parameters(), strict=True):
            p.copy_(q - delta[name].to(self.device))
        return criteria.Evaluation(
            uid=sub.uid,
            hotkey=sub.hotkey,
            own_before=float(lm_loss(base, own)),
            own_after=float(lm_loss(work, own)),
            random_before=float(lm_loss(base, rand)),
            random_after=float(lm_loss(work, rand)),
            base_hash_ok=sub.header.base_model_hash == base_hash,
            arrival=float(sub.arrival),
        )


def validation_indices(dataset: TokenDataset, cfg: SubnetConfig, count: int) -> list[int]:
    """A fixed spread of validation-split samples (same every window, so losses compare)."""
    total = dataset.num_samples(cfg.seq_len, "val")
    if total <= 0:
        raise ValueError("the dataset's validation split is shorter than one sample")
    count = min(count, total)
    return [i * total // count for i in range(count)]


@torch.no_grad()
def validation_loss(model: Transformer, dataset: TokenDataset, cfg: SubnetConfig, indices: Sequence[int],
                    device: str = "cpu") -> float:
    """Mean LM loss on the fixed validation samples, in batches of ``cfg.eval_samples``."""
    model = model.to(device).eval()
    losses, step = [], cfg.eval_samples
    for i in range(0, len(indices), step):
        batch = dataset.batch(list(indices[i : i + step]), cfg.seq_len, "val").to(device)
        losses.append(float(lm_loss(model, batch)) * batch.shape[0])
    return sum(losses) / len(indices)
