"""Outputs mode: the lead validator trains the student on the accepted teacher outputs and
publishes the step like an aggregate.

The student is the network's model θ_w (``SubnetConfig.preset``). Each window the lead runs
one pass of AdamW over the samples whose outputs passed verification (all accepted miners'
samples, shuffled by window), on ``protocol.distill.topk_kl_loss`` (KL to the teacher's top-k
distribution, mixed with ``distill_hard_weight`` of the hard-label loss), and publishes
Δ = θ_w − θ_trained as an ``Aggregate`` payload (``protocol.aggregate_payload``). Every node
applies it with the outer step (lr 1 by default in outputs mode) and checks
``next_model_hash``, exactly as in gradient mode. The AdamW moments live in the lead's
process (a restart starts them afresh).

Example:
    >>> trainer = StudentTrainer.for_subnet(cfg, device="cpu")
    >>> header, payload = build_student_update(state, result, hotkeys, cfg, trainer, dataset)
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from node.model_state import ModelState
from protocol.aggregate_payload import encode_aggregate
from protocol.data import Dataset
from protocol.distill import dequantize, topk_kl_loss
from protocol.messages import Aggregate, Contributor
from protocol.model import ModelConfig, build_model, subnet_model_config
from protocol.outputs_codec import TeacherOutputs
from protocol.subnet import SubnetConfig


@dataclass(frozen=True)
class StudentBatch:
    """Samples (B, T+1) and their teacher targets: ids (B, T, k), log-probs (B, T, k), rest (B, T)."""

    tokens: Tensor
    ids: Tensor
    logp: Tensor
    logp_rest: Tensor


# (student logits (B, T, V), batch) -> scalar loss
StudentLoss = Callable[[Tensor, StudentBatch], Tensor]


def distill_loss(hard_weight: float) -> StudentLoss:
    """KL to the teacher's top-k distribution, with ``hard_weight`` of the hard-label loss."""
    def loss(logits: Tensor, batch: StudentBatch) -> Tensor:
        dev = logits.device
        return topk_kl_loss(logits, batch.ids.to(dev), batch.logp.to(dev), batch.logp_rest.to(dev),
                            batch.tokens[:, 1:].to(dev), hard_weight)
    return loss


class StudentTrainer:
    """AdamW over a working copy of the student; its moments persist across windows."""

    def __init__(self, model_cfg: ModelConfig, *, lr: float, weight_decay: float = 0.0,
                 device: str | torch.device = "cpu", loss: StudentLoss, grad_clip: float = 1.0) -> None:
        self.device = torch.device(device)
        self.model = build_model(model_cfg).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95))
        self.loss, self.grad_clip = loss, grad_clip

    @classmethod
    def for_subnet(cls, cfg: SubnetConfig, device: str | torch.device = "cpu") -> StudentTrainer:
        return cls(subnet_model_config(cfg), lr=cfg.inner_lr, weight_decay=cfg.inner_weight_decay, device=device,
                   loss=distill_loss(cfg.distill_hard_weight))

    def train(self, base: Mapping[str, Tensor], batches: Sequence[StudentBatch]) -> tuple[dict[str, Tensor], list[float]]:
        """One pass over ``batches`` from θ_w = ``base``; returns Δ = θ_w − θ_trained (CPU fp32) and the losses."""
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.copy_(base[name].to(self.device))
        losses = [self.step(b) for b in batches]
        delta = {n: base[n].float() - p.detach().float().cpu() for n, p in self.model.named_parameters()}
        return delta, losses

    def step(self, batch: StudentBatch) -> float:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.model(batch.tokens[:, :-1].to(self.device)), batch)
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        return float(loss.detach())


Accepted = Mapping[int, tuple[Sequence[int], TeacherOutputs]]  # uid -> (sample indices, their outputs)


def student_rows(accepted: Accepted, window: int) -> list[tuple[int, int]]:
    """Every accepted (uid, sample) pair, shuffled by the window (seeded: reproducible)."""
    rows = [(uid, j) for uid in sorted(accepted) for j in range(accepted[uid][1].n_samples)]
    seed = hashlib.sha256(b"swarmtrain/student-order/v1" + window.to_bytes(8, "little")).digest()
    random.Random(seed).shuffle(rows)
    return rows


def batch_of(dataset: Dataset, cfg: SubnetConfig, accepted: Accepted, rows: Sequence[tuple[int, int]]) -> StudentBatch:
    """The samples of ``rows`` with their teacher targets, dequantized."""
    tokens = dataset.batch([accepted[u][0][j] for u, j in rows], cfg.seq_len)
    pick = [(accepted[u][1], j) for u, j in rows]
    ids, q, rest = (torch.stack([torch.as_tensor(getattr(o, f)[j], dtype=torch.int64) for o, j in pick])
                    for f in ("ids", "q", "rest_q"))
    bits = cfg.outputs_value_bits
    return StudentBatch(tokens, ids, dequantize(q, bits), dequantize(rest, bits))


def student_batches(dataset: Dataset, cfg: SubnetConfig, accepted: Accepted, window: int) -> list[StudentBatch]:
    """Every accepted sample with its outputs (``student_rows`` order) in batches of ``cfg.batch_size``."""
    rows = student_rows(accepted, window)
    return [batch_of(dataset, cfg, accepted, rows[i : i + cfg.batch_size]) for i in range(0, len(rows), cfg.batch_size)]


def build_student_update(state: ModelState, accepted: Accepted,
                         hotkeys: Mapping[int, str], cfg: SubnetConfig, trainer: StudentTrainer,
                         dataset: Dataset) -> tuple[Aggregate, bytes, dict[str, float | None]]:
    """The ``Aggregate`` of ``state.window`` carrying the student update (``state`` is not modified),
    its payload, and figures for the metrics line (steps, loss, seconds)."""
    started = time.monotonic()
    uids = sorted(u for u in accepted if accepted[u][1].n_samples > 0)
    payload, losses = b"", list[float]()
    if uids:
        delta, losses = trainer.train(state.params(), student_batches(dataset, cfg, {u: accepted[u] for u in uids}, state.window))
        payload = encode_aggregate(delta, state.spec)
    preview = state.copy()
    next_hash = preview.apply_payload(state.window, payload, len(uids))
    total = sum(accepted[u][1].positions for u in uids)
    header = Aggregate(
        netuid=cfg.netuid, window=state.window,
        contributors=tuple(Contributor(uid=u, hotkey=hotkeys[u], weight=accepted[u][1].positions / total) for u in uids),
        base_model_hash=state.hash(), next_model_hash=next_hash,
        payload_sha256=hashlib.sha256(payload).hexdigest(), payload_len=len(payload), outer_lr=float(cfg.outer_lr),
    )
    figures = {"steps": len(losses), "loss_first": losses[0] if losses else None,
               "loss_last": losses[-1] if losses else None, "seconds": round(time.monotonic() - started, 3)}
    return header, payload, figures
