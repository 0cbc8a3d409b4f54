"""Cheating outputs-mode miners, for demonstrations, tests and benchmarks: each must earn 0.

    python -m swarmtrain.cheat_miner --cheat random <swarmtrain miner flags>   (`swarmtrain local --cheat` starts it)

| cheat | what it sends |
|---|---|
| `random` | random ids and log-probabilities (well-formed: it passes intake) |
| `constant` | one fixed distribution at every position |
| `student` | the student's outputs (a smaller preset: the network's own model) |
| `layers` | the teacher with half its layers (a cheaper model) |
| `lowbit` | the teacher with 4-bit weights (precision beyond the tolerance) |
| `other_uid` | the teacher's outputs on the next uid's samples |
| `stale` | the teacher's outputs on its samples of the previous window |
| `partial` | the teacher's outputs with the last 10 % of samples faked |
| `wrong_teacher` | another teacher: the pinned one with 5 % noise on its weights |

The transforms are plain functions so benchmarks apply them without a network.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor

from miner.teacher import Labeler, OutputsMiner
from node.teacher import Teacher
from protocol.distill import teacher_topk
from protocol.model import Transformer
from protocol.outputs_codec import TeacherOutputs
from protocol.windows import assigned_samples

PARTIAL_FRACTION = 0.1


# ---- transforms -------------------------------------------------------------------------------


def random_outputs(n: int, seq_len: int, k: int, vocab: int, bits: int, rng: np.random.Generator) -> TeacherOutputs:
    """Random distributions over random ids, put in the payload's canonical form."""
    logits = torch.as_tensor(rng.normal(0.0, 3.0, size=(n, seq_len, vocab)), dtype=torch.float32)
    return teacher_topk(torch.log_softmax(logits, -1), k, bits)


def constant_outputs(n: int, seq_len: int, k: int, vocab: int, bits: int) -> TeacherOutputs:
    """The same distribution at every position: mass halving from id 32 (a space) upward."""
    logits = torch.full((vocab,), -20.0)
    logits[32 : 32 + k] = -torch.arange(k, dtype=torch.float32) * 0.7
    one = teacher_topk(torch.log_softmax(logits, -1)[None, None], k, bits)
    return TeacherOutputs(np.broadcast_to(one.ids, (n, seq_len, k)).copy(), np.broadcast_to(one.q, (n, seq_len, k)).copy(),
                          np.broadcast_to(one.rest_q, (n, seq_len)).copy())


def fake_tail(outputs: TeacherOutputs, fraction: float, vocab: int, bits: int, rng: np.random.Generator) -> TeacherOutputs:
    """The last ``fraction`` of the samples replaced by random outputs (the work skipped)."""
    n = outputs.n_samples
    keep = n - max(1, round(n * fraction))
    fake = random_outputs(n - keep, outputs.ids.shape[1], outputs.ids.shape[2], vocab, bits, rng)
    return TeacherOutputs(*(np.concatenate([getattr(outputs, f)[:keep], getattr(fake, f).astype(getattr(outputs, f).dtype)])
                            for f in ("ids", "q", "rest_q")))


def _variant(teacher: Teacher, model: Transformer) -> Teacher:
    return Teacher(model.eval(), teacher.config, teacher.hash, teacher.device, teacher.dtype)


def fewer_layers(teacher: Teacher, keep: int | None = None) -> Teacher:
    """The teacher's first ``keep`` blocks (half by default), its norm and head: a cheaper model."""
    model = copy.deepcopy(teacher.model)
    model.layers = model.layers[: keep if keep is not None else max(1, len(model.layers) // 2)]
    return _variant(teacher, model)


@torch.no_grad()
def low_precision(teacher: Teacher, bits: int = 4) -> Teacher:
    """Every weight matrix rounded to ``bits`` bits per row (absmax scale): a cheap, lossy teacher."""
    model = copy.deepcopy(teacher.model)
    levels = 2 ** (bits - 1) - 1
    for p in model.parameters():
        if p.dim() == 2:
            scale = p.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / levels
            p.copy_((p / scale).round() * scale)
    return _variant(teacher, model)


@torch.no_grad()
def perturbed(teacher: Teacher, scale: float = 0.05, seed: int = 0) -> Teacher:
    """Another teacher of the same shape: each weight times (1 + scale · N(0, 1))."""
    model = copy.deepcopy(teacher.model)
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        noise = torch.randn(p.shape, generator=gen).to(p.device, p.dtype)
        p.mul_(1 + scale * noise)
    return _variant(teacher, model)


# ---- miners -----------------------------------------------------------------------------------


class _Cheat(OutputsMiner):
    def rng(self, window: int) -> np.random.Generator:
        return np.random.default_rng([window, self.uid])


class RandomMiner(_Cheat):
    def samples_to_label(self, window: int, indices: list[int]) -> Tensor:
        return super().samples_to_label(window, indices)[:1]  # one batch of real work, the rest invented

    def finish_outputs(self, window: int, outputs: TeacherOutputs) -> TeacherOutputs:
        c = self.cfg
        return random_outputs(c.samples_per_window, c.seq_len, c.outputs_topk, c.vocab_size, c.outputs_value_bits, self.rng(window))


class ConstantMiner(RandomMiner):
    def finish_outputs(self, window: int, outputs: TeacherOutputs) -> TeacherOutputs:
        c = self.cfg
        return constant_outputs(c.samples_per_window, c.seq_len, c.outputs_topk, c.vocab_size, c.outputs_value_bits)


class StudentMiner(_Cheat):
    """Labels with the network's student (θ_w), a smaller preset than the teacher."""

    async def make_payload(self, window: int, indices: list[int], report: Any) -> tuple[bytes, list[int]]:
        honest = self.labeler.teacher
        student = self.model.clone_model().to(honest.device)
        self.labeler = Labeler(Teacher(student.eval(), student.cfg, honest.hash, honest.device, torch.float32), self.cfg)
        try:
            return await super().make_payload(window, indices, report)
        finally:
            self.labeler = Labeler(honest, self.cfg)


class _OtherTeacher(_Cheat):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.labeler = Labeler(self.transform(self.labeler.teacher), self.cfg, batch_size=self.labeler.batch_size)

    def transform(self, teacher: Teacher) -> Teacher:
        raise NotImplementedError


class LayersMiner(_OtherTeacher):
    def transform(self, teacher: Teacher) -> Teacher:
        return fewer_layers(teacher)


class LowbitMiner(_OtherTeacher):
    def transform(self, teacher: Teacher) -> Teacher:
        return low_precision(teacher)


class WrongTeacherMiner(_OtherTeacher):
    def transform(self, teacher: Teacher) -> Teacher:
        return perturbed(teacher)


class OtherUidMiner(_Cheat):
    """Labels the samples assigned to the next uid (it sends them as its own)."""

    def samples_to_label(self, window: int, indices: list[int]) -> Tensor:
        c = self.cfg
        population = self.dataset.num_samples(c.seq_len)
        other = assigned_samples(c.seed_bytes, window, self.uid + 1, c.samples_per_window, population)
        return self.dataset.batch(other, c.seq_len)


class StaleMiner(_Cheat):
    """Sends outputs of its previous window's samples (as if it had kept them)."""

    def samples_to_label(self, window: int, indices: list[int]) -> Tensor:
        c = self.cfg
        population = self.dataset.num_samples(c.seq_len)
        old = assigned_samples(c.seed_bytes, max(window - 1, 0), self.uid, c.samples_per_window, population)
        if window == 0:
            old = assigned_samples(c.seed_bytes, window + 1, self.uid, c.samples_per_window, population)
        return self.dataset.batch(old, c.seq_len)


class PartialMiner(_Cheat):
    """Labels the first 90 % of its samples and invents the rest."""

    def finish_outputs(self, window: int, outputs: TeacherOutputs) -> TeacherOutputs:
        c = self.cfg
        return fake_tail(outputs, PARTIAL_FRACTION, c.vocab_size, c.outputs_value_bits, self.rng(window))


CHEATS: dict[str, type[OutputsMiner]] = {
    "random": RandomMiner, "constant": ConstantMiner, "student": StudentMiner, "layers": LayersMiner,
    "lowbit": LowbitMiner, "other_uid": OtherUidMiner, "stale": StaleMiner, "partial": PartialMiner,
    "wrong_teacher": WrongTeacherMiner,
}


__all__ = ["CHEATS", "constant_outputs", "fake_tail", "fewer_layers", "low_precision", "perturbed",
           "random_outputs"]
