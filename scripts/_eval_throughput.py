"""Miners evaluated per window, one at a time against batched (``bench_validator.py --miners N``).

A window holds N verified submissions: a few honest updates (trained on their own
assignment with the miner's trainer), a copy of one of them, and random updates for the
rest (the cost of evaluating does not depend on the content). Both evaluators choose the
same E of them (``select_for_evaluation``; the honest ones first) and are timed at E/2
and E evaluated miners: the slope is the cost per miner at the window's close, the rest
the close's fixed cost. The batched evaluator's ``prepare`` (done while submissions
arrive: the chosen miners measured whole, every submission checked against the last
aggregate) is timed separately. Both evaluators rescale to the same previous-window norm
(criteria v4; a steady state: the median norm of this window's updates) and know the last
aggregate (an earlier window's: random updates), so both pay for the resent-aggregate
check, one at a time at the close. Both results must agree: the same verdicts and
Evaluations within fp tolerance.

Accounting, identical for both: at the close the validator evaluates and builds the
aggregate while miners wait (the validation loss it logs runs after publishing, so it is
left out of both); verification (and the batched ``prepare``) runs as submissions
arrive, during the miners' training. Miners per window = the fewer of
``(close budget − close fixed − aggregate) / close per miner`` and
``training time / arrival work per miner``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from miner.trainer import InnerTrainer
from node.model_state import ModelState
from protocol import codec, criteria
from protocol.data import TokenDataset
from protocol.model import subnet_model_config
from protocol.subnet import SubnetConfig
from protocol.windows import assigned_samples
from validator.batched_eval import BatchedEvaluator
from validator.evaluate import Evaluator, WindowEvaluation, window_entropy
from validator.store import StoredSubmission

SECRET = b"bench-throughput".ljust(32, b".")


@dataclass(frozen=True)
class Method:
    """Seconds of one evaluator: per miner as submissions arrive, and at the close."""

    name: str
    arrival_per_miner: float  # verify (+ prepare)
    close_fixed: float  # per window at the close (+ the aggregate)
    close_per_miner: float
    dense_kept_bytes: int = 0  # decoded updates the result holds for the aggregate

    def capacity(self, close_budget_s: float, arrival_budget_s: float) -> int:
        close = math.floor(max(close_budget_s - self.close_fixed, 0) / self.close_per_miner)
        arrival = math.floor(arrival_budget_s / self.arrival_per_miner) if self.arrival_per_miner > 0 else close
        return max(0, min(close, arrival))


def honest_payload(cfg: SubnetConfig, ds: TokenDataset, state: ModelState, uid: int) -> bytes:
    """A real update: the miner's trainer, H steps on the uid's assigned samples, encoded."""
    ccfg = cfg.codec_config()
    trainer = InnerTrainer(subnet_model_config(cfg), lr=cfg.inner_lr)
    idx = assigned_samples(cfg.seed_bytes, state.window, uid, cfg.samples_per_window, ds.num_samples(cfg.seq_len))
    samples = ds.batch(idx, cfg.seq_len)
    result = trainer.train(state.params(), list(samples.split(cfg.batch_size)))
    return codec.encode(codec.compress(result.delta, ccfg), ccfg)


def population(subs: list[StoredSubmission], honest: int) -> dict[int, int]:
    """``last_evaluated`` that puts the honest uids (and their copy) first in the selection."""
    return {s.uid: 0 for s in subs[honest + 1:]}


@dataclass(frozen=True)
class Window:
    """What both evaluators are given: the window, the previous window's norm, the last aggregate."""

    state: ModelState
    subs: list[StoredSubmission]
    last: dict[int, int]  # last_evaluated
    previous_norm: float
    aggregate: bytes


def evaluate(make: Callable[[int], Evaluator], win: Window, e: int,
             prepare: bool) -> tuple[WindowEvaluation, float, float]:
    """(result, seconds at the close, seconds of prepare) for E evaluated of the window."""
    ev, state, subs = make(e), win.state, win.subs
    ev.note_aggregate(win.aggregate, state.spec)
    norm, registered = win.previous_norm, len(subs)
    chosen = set(criteria.select_for_evaluation([s.uid for s in subs], win.last, e, state.window,
                                                window_entropy(SECRET, state.window), ev.params))
    prep_s = 0.0
    if prepare and isinstance(ev, BatchedEvaluator):
        started = time.perf_counter()
        ev.prepare(state, [s for s in subs if s.uid in chosen], secret=SECRET,  # measured whole
                   previous_norm=norm, registered=registered)
        ev.prepare(state, subs, secret=SECRET, limit=0,  # the others: the resent-aggregate check
                   previous_norm=norm, registered=registered)
        prep_s = time.perf_counter() - started
    started = time.perf_counter()
    result = ev.evaluate_window(state, subs, last_evaluated=win.last, secret=SECRET, previous_norm=norm,
                                registered=registered)
    return result, time.perf_counter() - started, prep_s


def time_method(name: str, make: Callable[[int], Evaluator], win: Window, e: int, verify_s: float,
                aggregate_s: float, prepare: bool, repeats: int = 1) -> tuple[Method, WindowEvaluation]:
    """Close cost at E/2 and E evaluated miners (slope = per miner); prepare cost per miner.
    Each the best of ``repeats`` runs (other jobs on a shared machine only ever add time)."""
    half = max(1, e // 2)
    t_half = min(evaluate(make, win, half, prepare)[1] for _ in range(repeats))
    runs = [evaluate(make, win, e, prepare) for _ in range(repeats)]
    result = runs[0][0]
    t_full, prep_s = min(r[1] for r in runs), min(r[2] for r in runs)
    per_miner = (t_full - t_half) / (e - half) if e > half else t_full
    if per_miner <= 0:  # timing noise swamped the slope: charge the whole close to the miners
        per_miner = t_full / e
    fixed = max(t_full - per_miner * e, 0.0) + aggregate_s
    kept = sum(t.numel() * t.element_size() for d in result.dense.values() for t in d.values())
    return Method(name, verify_s + prep_s / e, fixed, per_miner, kept), result


def compare(one: WindowEvaluation, many: WindowEvaluation) -> dict[str, float | str]:
    """Largest differences between the two results' Evaluations, and whether verdicts agree."""
    gain = max((abs(many.evaluations[u].gain - e.gain) / max(abs(e.gain), 1e-12)
                for u, e in one.evaluations.items()), default=0.0)
    own_z = max((abs(many.evaluations[u].own_z - e.own_z) for u, e in one.evaluations.items()), default=0.0)
    same = set(one.evaluations) == set(many.evaluations) and all(
        (one.verdicts[u].score, one.verdicts[u].reason) == (many.verdicts[u].score, many.verdicts[u].reason)
        for u in one.verdicts)
    reasons = sorted({v.reason for v in one.verdicts.values()})
    return {"same_verdicts": int(same), "max_gain_rel_diff": gain, "max_own_z_diff": own_z,
            "reasons": ",".join(reasons)}


def batched_factory(cfg: SubnetConfig, ds: TokenDataset, device: torch.device,
                    models_per_pass: int, memory_bytes: int) -> Callable[[int], Evaluator]:
    def make(e: int) -> Evaluator:
        return BatchedEvaluator(cfg.model_copy(update={"max_evaluations": e}), ds, device=str(device),
                                models_per_pass=models_per_pass, memory_bytes=memory_bytes)
    return make


def one_at_a_time_factory(cfg: SubnetConfig, ds: TokenDataset, device: torch.device) -> Callable[[int], Evaluator]:
    def make(e: int) -> Evaluator:
        return Evaluator(cfg.model_copy(update={"max_evaluations": e}), ds, device=str(device))
    return make
