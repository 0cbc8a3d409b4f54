"""Evaluating many miners per window: the same measurements as ``Evaluator``, batched.

``Evaluator.measure`` takes, per chosen miner, θ_w's losses on its own samples, then
θ_w − Δ·scale's losses on its own samples and on the window's random batch, each in
passes of ``cfg.eval_samples`` rows. ``BatchedEvaluator`` computes the same numbers
(``tests/validator/test_batched_eval.py``: the same Evaluations within fp tolerance, the
same verdicts) with less waiting:

* **before the window closes** (``prepare``, called by the validator while uploads
  arrive): θ_w's per-sample losses on every submitter's own samples and on the random
  batch — all that does not depend on the window's other submissions — in large passes;
* **at the close**: only θ_w − Δ·scale's losses (the scale is the median norm of all the
  window's updates, known only then): own and random rows of K miners in one pass, with
  ``torch.func.functional_call`` + ``vmap`` over the K stacked parameter sets (K > 1 on
  CUDA; on a CPU one model per pass is as fast, so K = 1 there), rows per pass bounded by
  ``memory_bytes``;
* **memory**: a stored submission holds its payload bytes, never its update
  (``validator.store.StoredSubmission``); a group of K is decoded from its payloads when
  it is measured (K sparse updates), its K parameter sets are built on the device one
  tensor at a time, and all of it is dropped before the next group. After the verdicts
  only the top-G contributors are decoded densely for the aggregate (``Evaluator``).

Example:
    >>> ev = BatchedEvaluator(cfg, dataset, device="cuda", memory_bytes=8 << 30)
    >>> ev.prepare(state, submissions_so_far, secret=secret)     # while the window runs
    >>> result = ev.evaluate_window(state, submissions, last_evaluated={}, secret=secret)
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from node.model_state import ModelState
from protocol import codec, criteria
from protocol.data import Dataset
from protocol.model import Transformer, sample_losses
from protocol.subnet import SubnetConfig
from validator.evaluate import Evaluator, WindowEvaluation, _RandomBatch, window_entropy
from validator.settings import ValidatorSettings
from validator.store import StoredSubmission

log = logging.getLogger("swarmtrain.validator.batched_eval")

DEFAULT_MEMORY_BYTES = 2 << 30
MAX_MODELS_PER_PASS = 16


@dataclass
class _Prepared:
    """θ_w-only work of one window, done while its submissions arrive."""

    window: int
    base: Transformer
    own_before: dict[int, Tensor] = field(default_factory=dict)  # uid -> (N_own,) losses of θ_w
    own_batches: dict[int, Tensor] = field(default_factory=dict)  # uid -> (N_own, T+1) on the device
    random: dict[int, _RandomBatch] = field(default_factory=dict)  # max uid -> the shared random batch


def activation_bytes_per_row(cfg: SubnetConfig, model: Transformer) -> int:
    """Peak bytes one evaluated sample needs in a no-grad forward (the logits dominate)."""
    m = model.cfg
    return cfg.seq_len * 4 * (3 * m.vocab_size + 4 * m.dim + 2 * m.ffn_hidden)


class BatchedEvaluator(Evaluator):
    """``Evaluator`` with batched measurement and work done before the close (see module doc)."""

    def __init__(self, cfg: SubnetConfig, dataset: Dataset, *, device: str = "cpu",
                 params: criteria.CriteriaParams = criteria.DEFAULT_PARAMS, models_per_pass: int = 0,
                 memory_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        super().__init__(cfg, dataset, device=device, params=params)
        self.memory_bytes = memory_bytes
        self.models_per_pass = models_per_pass or (MAX_MODELS_PER_PASS if self.device.type == "cuda" else 1)
        self._prepared: _Prepared | None = None

    # ---- sizes ---------------------------------------------------------------------------

    def rows_per_pass(self, model: Transformer, models: int) -> int:
        """Rows one forward may take, so K models' parameters and activations fit the budget."""
        params = sum(p.numel() for p in model.parameters()) * 4 * models
        free = max(self.memory_bytes - params, 0)
        return max(1, free // (models * activation_bytes_per_row(self.cfg, model)))

    def group_size(self, model: Transformer) -> int:
        """K: models per pass, bounded by the memory for their stacked parameters."""
        params = sum(p.numel() for p in model.parameters()) * 4
        return max(1, min(self.models_per_pass, self.memory_bytes // (2 * params)))

    @torch.no_grad()
    def losses(self, model: Transformer, batch: Tensor) -> Tensor:
        """Per-sample losses in passes as large as the memory budget allows."""
        step = self.rows_per_pass(model, 1)
        return torch.cat([sample_losses(model, batch[i : i + step]) for i in range(0, batch.shape[0], step)])

    # ---- before the close ---------------------------------------------------------------

    def _for_window(self, state: ModelState) -> _Prepared:
        if self._prepared is None or self._prepared.window != state.window:
            self._prepared = _Prepared(state.window, state.clone_model().to(self.device).eval())
        return self._prepared

    @torch.no_grad()
    def prepare(self, state: ModelState, subs: Sequence[StoredSubmission], *, secret: bytes,
                limit: int | None = None) -> int:
        """θ_w's losses on the own samples of submitters not prepared yet (at most ``limit``),
        and the random batch for the highest uid so far. Returns how many were prepared."""
        prep = self._for_window(state)
        entropy = window_entropy(secret, state.window)
        todo = [s.uid for s in subs if s.uid not in prep.own_before][: limit if limit is not None else None]
        self._own_before(prep, todo, entropy)
        if subs and not prep.random:  # once per window; the close redraws it if a higher uid is chosen
            self._random_for(prep, max(s.uid for s in subs), entropy)
        return len(todo)

    def _own_before(self, prep: _Prepared, uids: Sequence[int], entropy: bytes) -> None:
        """θ_w's per-sample losses on the own samples of ``uids``, all in shared passes."""
        if not uids:
            return
        batches = [self.own_batch(prep.window, uid, entropy) for uid in uids]
        losses = self.losses(prep.base, torch.cat(batches))
        for uid, batch, part in zip(uids, batches, torch.split(losses, [b.shape[0] for b in batches]), strict=True):
            prep.own_batches[uid], prep.own_before[uid] = batch, part

    def _random_for(self, prep: _Prepared, max_uid: int, entropy: bytes) -> _RandomBatch:
        if max_uid not in prep.random:
            prep.random = {max_uid: self.random_batch(prep.base, prep.window, entropy, max_uid)}
        return prep.random[max_uid]

    # ---- at the close -------------------------------------------------------------------

    @torch.no_grad()
    def measure_all(self, state: ModelState, chosen: Sequence[StoredSubmission], out: WindowEvaluation,
                    norms: Mapping[int, float], entropy: bytes) -> dict[int, criteria.Evaluation]:
        if not chosen:
            return {}
        prep = self._for_window(state)
        self._own_before(prep, [s.uid for s in chosen if s.uid not in prep.own_before], entropy)
        rand = self._random_for(prep, max(s.uid for s in chosen), entropy)
        base_hash = state.hash()
        results: dict[int, criteria.Evaluation] = {}
        live = []
        for s in chosen:
            if norms[s.uid] <= 0:  # nothing to apply: measured as Evaluator.measure does
                results[s.uid] = criteria.Evaluation(s.uid, s.hotkey, gain=0.0, own_z=0.0, norm=0.0,
                                                     base_hash_ok=s.header.base_model_hash == base_hash)
            else:
                live.append(s)
        k = self.group_size(prep.base)
        for start in range(0, len(live), k):
            group = live[start : start + k]
            after = self._after_losses(prep, group, norms, out.reference_norm, rand, state.spec)
            for s, (own_after, rand_after) in zip(group, after, strict=True):
                results[s.uid] = self._evaluation(s, prep.own_before[s.uid], own_after, rand, rand_after,
                                                  norms[s.uid], base_hash)
        return {s.uid: results[s.uid] for s in chosen}

    def _after_losses(self, prep: _Prepared, group: Sequence[StoredSubmission], norms: Mapping[int, float],
                      ref_norm: float, rand: _RandomBatch, spec: Mapping[str, tuple[int, ...]]) -> list[tuple[Tensor, Tensor]]:
        """θ_w − Δ·scale's losses on (own, random) rows for each miner of the group."""
        base = dict(prep.base.named_parameters())
        updates = [self.decode(s, spec) for s in group]  # K sparse updates, decoded from the stored payloads
        scales = [ref_norm / norms[s.uid] for s in group]
        rows = [torch.cat([prep.own_batches[s.uid], rand.batch]) for s in group]
        if len(group) == 1:
            delta = codec.decompress(updates[0], spec, device=self.device)
            losses = [self._single(prep, base, delta, scales[0], rows[0])]
        else:
            losses = list(self._stacked(prep, base, updates, scales, torch.stack(rows), spec))
        n_own = [prep.own_batches[s.uid].shape[0] for s in group]
        return [(loss[:n], loss[n:]) for loss, n in zip(losses, n_own, strict=True)]

    def _single(self, prep: _Prepared, base: Mapping[str, Tensor], delta: Mapping[str, Tensor], scale: float,
                rows: Tensor) -> Tensor:
        params = {name: q - delta[name].to(self.device) * scale for name, q in base.items()}
        step = self.rows_per_pass(prep.base, 1)
        return torch.cat([_functional_losses(prep.base, params, rows[i : i + step])
                          for i in range(0, rows.shape[0], step)])

    def _stacked(self, prep: _Prepared, base: Mapping[str, Tensor], updates: Sequence[codec.SparseUpdate],
                 scales: Sequence[float], rows: Tensor, spec: Mapping[str, tuple[int, ...]]) -> Tensor:
        """(K, N) losses of K perturbed models, one vmap'd forward per slice of rows. The K
        parameter sets are built one tensor at a time from the sparse updates, so no full
        dense update exists besides them."""
        k = len(updates)
        scale = torch.tensor(scales, dtype=torch.float32, device=self.device)
        params = {}
        for name, q in base.items():
            stacked = torch.stack([_dense_tensor(u, name, spec[name], self.device) for u in updates])
            params[name] = q.unsqueeze(0) - stacked * scale.view(k, *([1] * q.dim()))
            del stacked
        step = self.rows_per_pass(prep.base, k)
        run = torch.func.vmap(lambda p, x: _functional_losses(prep.base, p, x), in_dims=(0, 0))
        with warnings.catch_warnings():  # CPU attention has no vmap rule (a loop): why K = 1 on CPU
            warnings.filterwarnings("ignore", message=".*batching rule.*")
            return torch.cat([run(params, rows[:, i : i + step]) for i in range(0, rows.shape[1], step)], dim=1)

    def _evaluation(self, s: StoredSubmission, own_before: Tensor, own_after: Tensor, rand: _RandomBatch,
                    rand_after: Tensor, norm: float, base_hash: str) -> criteria.Evaluation:
        """The same arithmetic as ``Evaluator.measure`` on the measured losses."""
        gain = criteria.relative_gain(float(rand.before.mean()), float(rand_after.mean()))
        own_z = criteria.own_data_z((own_before - own_after).double().cpu().tolist(),
                                    (rand.before - rand_after).double().cpu().tolist())
        return criteria.Evaluation(s.uid, s.hotkey, gain=gain, own_z=own_z, norm=norm,
                                   base_hash_ok=s.header.base_model_hash == base_hash)


def _dense_tensor(update: codec.SparseUpdate, name: str, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """One tensor of ``update`` made dense, exactly as ``codec.decompress`` makes it."""
    part = {name: update[name]} if name in update else {}
    return codec.decompress(part, {name: shape}, device=device)[name]


def _functional_losses(model: Transformer, params: Mapping[str, Tensor], batch: Tensor) -> Tensor:
    """``protocol.model.sample_losses`` of ``model`` with ``params`` in place of its own."""
    def forward(idx: Tensor) -> Tensor:
        return torch.func.functional_call(model, dict(params), (idx,))

    # sample_losses only calls its model: a closure over functional_call works as one
    return sample_losses(forward, batch)  # type: ignore[arg-type]


def memory_budget(device: str, setting_gib: float) -> int:
    """Bytes the batched evaluation may use: the setting, or (0) a quarter of a CUDA device."""
    if setting_gib > 0:
        return int(setting_gib * (1 << 30))
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_properties(torch.device(device)).total_memory // 4
    return DEFAULT_MEMORY_BYTES


def make_evaluator(cfg: SubnetConfig, dataset: Dataset, settings: ValidatorSettings,
                   params: criteria.CriteriaParams) -> Evaluator:
    """The validator's evaluator: batched (the default) or one miner at a time; same measurements."""
    if not settings.eval_batched:
        return Evaluator(cfg, dataset, device=settings.device, params=params)
    return BatchedEvaluator(cfg, dataset, device=settings.device, params=params,
                            models_per_pass=settings.eval_models_per_pass,
                            memory_bytes=memory_budget(settings.device, settings.eval_memory_gib))
