"""Evaluating many miners per window: the same measurements as ``Evaluator``, batched and
taken while the submissions arrive.

``Evaluator.measure`` takes, per chosen miner, θ_w's losses on its own samples, then
θ_w − Δ·scale's losses on its own samples and on the window's random batch. None of it
depends on the window's other submissions: the scale's reference norm is the median norm
of the validator's previous window (``criteria.reference_norm``), and the random batch keeps
clear of every registered uid (``criteria.reserved_uids``). ``BatchedEvaluator`` computes
the same numbers (``tests/validator/test_batched_eval.py``: the same Evaluations within fp
tolerance, the same verdicts) with less waiting:

* **before the window closes** (``prepare``, called by the validator while uploads
  arrive, a few submitters per call, least recently evaluated first): the random batch and
  θ_w's losses on it once, then for each submitter θ_w's losses on its own samples and, when
  the previous window's norm is known, the whole measurement;
* **at the close**: only the chosen submitters not measured yet (all of them in a
  validator's first window, whose reference norm is its own median), then copies, verdicts
  and the aggregate as ``Evaluator`` does them;
* **passes**: θ_w − Δ·scale's own and random rows of K miners in one pass, with
  ``torch.func.functional_call`` + ``vmap`` over the K stacked parameter sets (K > 1 on
  CUDA; on a CPU one model per pass is as fast, so K = 1 there), rows per pass bounded by
  ``memory_bytes``;
* **memory**: a stored submission holds its payload bytes, never its update
  (``validator.store.StoredSubmission``); a group of K is decoded from its payloads when
  it is measured (K sparse updates), its K parameter sets are built on the device one
  tensor at a time, and all of it is dropped before the next group. A measured submitter
  leaves its ``Evaluation`` (a few numbers) and its own batch's losses. After the verdicts
  only the top-G contributors are decoded densely for the aggregate (``Evaluator``).

Example:
    >>> ev = BatchedEvaluator(cfg, dataset, device="cuda", memory_bytes=8 << 30)
    >>> ev.prepare(state, submissions_so_far, secret=secret, previous_norm=norm, registered=n)
    >>> result = ev.evaluate_window(state, submissions, last_evaluated={}, secret=secret,
    ...                             previous_norm=norm, registered=n)
"""

from __future__ import annotations

import math
import time
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

DEFAULT_MEMORY_BYTES = 2 << 30
MAX_MODELS_PER_PASS = 16


@dataclass
class _Prepared:
    """Work of one window (θ_w and the validator's entropy), done while its submissions arrive."""

    window: int
    model_hash: str
    entropy: bytes
    base: Transformer
    own_before: dict[int, Tensor] = field(default_factory=dict)  # uid -> (N_own,) losses of θ_w
    own_batches: dict[int, Tensor] = field(default_factory=dict)  # uid -> (N_own, T+1) on the device
    reserved: int = 0  # criteria.reserved_uids the random batch was drawn for
    random: _RandomBatch | None = None
    ref_norm: float | None = None  # the reference norm ``measured`` used
    measured: dict[int, criteria.Evaluation] = field(default_factory=dict)  # before pooling
    resends: dict[tuple[int, str], bool] = field(default_factory=dict)  # (uid, hotkey) -> resends the last aggregate


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

    def _for_window(self, state: ModelState, entropy: bytes) -> _Prepared:
        prep = self._prepared
        if prep is None or (prep.window, prep.model_hash, prep.entropy) != (state.window, state.hash(), entropy):
            prep = self._prepared = _Prepared(state.window, state.hash(), entropy,
                                              state.clone_model().to(self.device).eval())
        return prep

    @torch.no_grad()
    def prepare(self, state: ModelState, subs: Sequence[StoredSubmission], *, secret: bytes,
                limit: int | None = None, budget_s: float | None = None, previous_norm: float | None = None,
                last_evaluated: Mapping[int, int] | None = None, registered: int = 0) -> int:
        """Measure up to ``limit`` of the submitters not measured yet, least recently evaluated
        first (``criteria.stale_first``): all of a measurement when ``previous_norm`` (the
        previous window's median norm) is known, else θ_w's losses on their own samples. Then
        check the rest against the last aggregate. ``budget_s``: start no new pass after this
        many seconds (one pass always runs). Returns how many it measured."""
        started = time.monotonic()
        entropy = window_entropy(secret, state.window)
        prep = self._for_window(state, entropy)
        if not subs:
            return 0
        if previous_norm is not None and not (math.isfinite(previous_norm) and previous_norm > 0):
            previous_norm = None  # as criteria.reference_norm reads it: the window's own median, at the close
        rand = self._random_for(prep, criteria.reserved_uids([s.uid for s in subs], registered))
        if previous_norm is None:
            by_uid = {s.uid: s for s in subs if s.uid not in prep.own_before}
        else:
            measured = self._measured_for(prep, criteria.reference_norm(previous_norm, ()))
            by_uid = {s.uid: s for s in subs if not _measured(measured, s)}
        todo = criteria.stale_first(by_uid, last_evaluated or {}, state.window, entropy)[:limit]

        def time_left() -> bool:
            return budget_s is None or time.monotonic() - started < budget_s

        taken, k = 0, self.group_size(prep.base)
        while taken < len(todo) and (taken == 0 or time_left()):
            group = todo[taken : taken + k]
            if previous_norm is None:
                self._own_before(prep, group)
            else:
                prep.measured.update(self._measure(prep, state, [by_uid[u] for u in group], prep.ref_norm or 1.0, rand))
            taken += len(group)
        for sub in (s for s in subs if (s.uid, s.hotkey) not in prep.resends):
            if not time_left():
                break
            self._check_resends(prep, [sub], state.spec)
        return taken

    def _check_resends(self, prep: _Prepared, subs: Sequence[StoredSubmission],
                       spec: Mapping[str, tuple[int, ...]]) -> None:
        """The copy check against the last aggregate, which decodes every update: on arrival."""
        if self.last_aggregate:
            prep.resends.update({(s.uid, s.hotkey): Evaluator.resends(self, s, spec) for s in subs})

    def resends(self, sub: StoredSubmission, spec: Mapping[str, tuple[int, ...]]) -> bool:
        prep = self._prepared
        if prep is not None and prep.window == sub.window and (sub.uid, sub.hotkey) in prep.resends:
            return prep.resends[sub.uid, sub.hotkey]
        return super().resends(sub, spec)

    def note_aggregate(self, payload: bytes, spec: Mapping[str, tuple[int, ...]]) -> None:
        super().note_aggregate(payload, spec)
        if self._prepared is not None:  # checked against the aggregate before this one
            self._prepared.resends = {}

    def _measured_for(self, prep: _Prepared, ref_norm: float) -> dict[int, criteria.Evaluation]:
        """The measurements taken with ``ref_norm`` (others are dropped)."""
        if prep.ref_norm != ref_norm:
            prep.ref_norm, prep.measured = ref_norm, {}
        return prep.measured

    def _own_before(self, prep: _Prepared, uids: Sequence[int]) -> None:
        """θ_w's per-sample losses on the own samples of ``uids``, all in shared passes."""
        uids = [u for u in uids if u not in prep.own_before]
        if not uids:
            return
        batches = [self.own_batch(prep.window, uid, prep.entropy) for uid in uids]
        losses = self.losses(prep.base, torch.cat(batches))
        for uid, batch, part in zip(uids, batches, torch.split(losses, [b.shape[0] for b in batches]), strict=True):
            prep.own_batches[uid], prep.own_before[uid] = batch, part

    def _random_for(self, prep: _Prepared, reserved: int) -> _RandomBatch:
        """The window's random batch for ``reserved`` uids; a new draw drops what used the old."""
        if prep.random is None or prep.reserved != reserved:
            prep.random = self.random_batch(prep.base, prep.window, prep.entropy, reserved)
            prep.reserved, prep.measured = reserved, {}
        return prep.random

    # ---- at the close -------------------------------------------------------------------

    @torch.no_grad()
    def measure_all(self, state: ModelState, chosen: Sequence[StoredSubmission], out: WindowEvaluation,
                    entropy: bytes, reserved: int) -> dict[int, criteria.Evaluation]:
        if not chosen:
            return {}
        prep = self._for_window(state, entropy)
        rand = self._random_for(prep, reserved)
        measured = self._measured_for(prep, out.reference_norm)
        missing = [s for s in chosen if not _measured(measured, s)]
        out.measured_at_close = len(missing)
        measured.update(self._measure(prep, state, missing, out.reference_norm, rand))
        return {s.uid: measured[s.uid] for s in chosen}

    def _measure(self, prep: _Prepared, state: ModelState, subs: Sequence[StoredSubmission], ref_norm: float,
                 rand: _RandomBatch) -> dict[int, criteria.Evaluation]:
        """An ``Evaluation`` (before pooling) per submission, K miners per pass."""
        base_hash = state.hash()
        results: dict[int, criteria.Evaluation] = {}
        live = []
        for s in subs:
            if s.norm <= 0:  # nothing to apply: measured as Evaluator.measure does
                results[s.uid] = criteria.Evaluation(s.uid, s.hotkey, gain=0.0, own_z=0.0, norm=0.0,
                                                     base_hash_ok=s.header.base_model_hash == base_hash)
            else:
                live.append(s)
        self._own_before(prep, [s.uid for s in live])
        k = self.group_size(prep.base)
        for start in range(0, len(live), k):
            group = live[start : start + k]
            after = self._after_losses(prep, group, ref_norm, rand, state.spec)
            for s, (own_after, rand_after) in zip(group, after, strict=True):
                results[s.uid] = self._evaluation(s, prep.own_before[s.uid], own_after, rand, rand_after, base_hash)
        return results

    def _after_losses(self, prep: _Prepared, group: Sequence[StoredSubmission], ref_norm: float,
                      rand: _RandomBatch, spec: Mapping[str, tuple[int, ...]]) -> list[tuple[Tensor, Tensor]]:
        """θ_w − Δ·scale's losses on (own, random) rows for each miner of the group."""
        base = dict(prep.base.named_parameters())
        updates = [self.decode(s, spec) for s in group]  # K sparse updates, decoded from the stored payloads
        scales = [ref_norm / s.norm for s in group]
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
                    rand_after: Tensor, base_hash: str) -> criteria.Evaluation:
        """The same arithmetic as ``Evaluator.measure`` on the measured losses."""
        gain = criteria.relative_gain(float(rand.before.mean()), float(rand_after.mean()))
        own_z = criteria.own_data_z((own_before - own_after).double().cpu().tolist(),
                                    (rand.before - rand_after).double().cpu().tolist())
        return criteria.Evaluation(s.uid, s.hotkey, gain=gain, own_z=own_z, norm=s.norm,
                                   base_hash_ok=s.header.base_model_hash == base_hash)


def _measured(measured: Mapping[int, criteria.Evaluation], sub: StoredSubmission) -> bool:
    """Whether ``sub`` itself was measured (a uid re-registered within the window to another
    hotkey is another submission)."""
    entry = measured.get(sub.uid)
    return entry is not None and entry.hotkey == sub.hotkey


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
