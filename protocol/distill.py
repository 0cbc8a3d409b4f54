"""Outputs mode's published rules (docs/criteria.md, *Outputs mode*): what a miner sends, how a
validator checks it, how it is paid, and the student's loss. Pure functions.

- ``teacher_topk``: a position's top-k log-probabilities and remaining mass, quantized
  and in canonical order: what an honest miner sends (``protocol.outputs_codec``).
- ``draw_checks``: the positions a validator recomputes, from its secret window entropy
  and the submission's payload hash (both fixed only once uploads close).
- ``check_positions``: a checked position's ``deviation`` (nats beyond the quantization
  bound); it fails when the deviation exceeds ``outputs_tolerance``.
- ``judge_outputs``: one failed check zeroes the submission ("mismatch"), and so does a
  median deviation of its checks above ``outputs_median_tolerance`` ("drift": another
  teacher, or a cheaper precision); otherwise the score is the share of the window's
  assigned positions it delivered.
- ``topk_kl_loss`` / ``full_kl_loss``: the student's loss on the accepted outputs (and, for
  benchmarks, on exact full-vocabulary logits).

Example:
    >>> lp = torch.log_softmax(torch.tensor([[2.0, 1.0, 0.0, -1.0]]), -1)
    >>> out = teacher_topk(lp[None], k=2, bits=8)
    >>> out.ids.tolist(), bool(check_positions(out.ids[0], out.q[0], out.rest_q[0], lp, 8, 0.05).ok.all())
    ([[[0, 1]]], True)
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from protocol import criteria
from protocol.outputs_codec import OutputsSpec, TeacherOutputs, quant_step

if TYPE_CHECKING:
    from protocol.subnet import SubnetConfig

OUTPUTS_VERSION = 1
OUTPUTS_REASONS = ("mismatch", "drift", "ok")  # why an outputs submission scored what it did
_CHECK_DOMAIN = b"swarmtrain/outputs-checks/v1"


@dataclass(frozen=True)
class OutputsRules:
    """Every subnet parameter the outputs-mode rules read (hashed into the criteria hash)."""

    teacher_hash: str
    topk: int
    value_bits: int
    spot_checks: int
    tolerance: float
    median_tolerance: float
    samples: int  # assigned per uid and window: the most a submission delivers
    seq_len: int
    hard_weight: float


def rules_of(cfg: SubnetConfig) -> OutputsRules:
    return OutputsRules(cfg.teacher_hash, cfg.outputs_topk, cfg.outputs_value_bits, cfg.outputs_spot_checks,
                        float(cfg.outputs_tolerance), float(cfg.outputs_median_tolerance), cfg.outputs_samples,
                        cfg.seq_len, float(cfg.distill_hard_weight))


def outputs_spec(cfg: SubnetConfig) -> OutputsSpec:
    """The payload shape a subnet's miners send (``protocol.outputs_codec``)."""
    digest = bytes.fromhex(cfg.teacher_hash)[:8] if cfg.teacher_hash else bytes(8)
    return OutputsSpec(topk=cfg.outputs_topk, bits=cfg.outputs_value_bits, vocab_size=cfg.vocab_size,
                       seq_len=cfg.seq_len, max_samples=cfg.outputs_samples, teacher_digest=digest)


def outputs_criteria_hash(rules: OutputsRules, params: criteria.CriteriaParams = criteria.DEFAULT_PARAMS) -> str:
    """sha256 hex of the canonical JSON of ``{"outputs": rules, "outputs_version", "params",
    "version"}``: gradient mode's criteria plus every outputs rule (validators commit it)."""
    doc = {"outputs": asdict(rules), "outputs_version": OUTPUTS_VERSION, "params": asdict(params),
           "version": criteria.CRITERIA_VERSION}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def criteria_hash_of(cfg: SubnetConfig, params: criteria.CriteriaParams = criteria.DEFAULT_PARAMS) -> str:
    """The criteria hash a validator of this subnet publishes (gradient mode's is unchanged)."""
    if cfg.task == "outputs":
        return outputs_criteria_hash(rules_of(cfg), params)
    return criteria.criteria_hash(params)


# ---- what a miner sends -------------------------------------------------------------------


def quantize(logp: Tensor, bits: int) -> Tensor:
    """Levels ``round(-logp / step)`` clamped to ``0 .. 2**bits - 1`` (int64)."""
    levels = torch.nan_to_num(-logp.double() / quant_step(bits), posinf=float(1 << bits))
    return levels.round().clamp(0, (1 << bits) - 1).to(torch.int64)


def dequantize(q: Tensor | np.ndarray, bits: int) -> Tensor:
    """Log-probabilities (fp32) of quantized levels."""
    return torch.as_tensor(q, dtype=torch.float32) * -quant_step(bits)


def teacher_topk(logprobs: Tensor, k: int, bits: int) -> TeacherOutputs:
    """``logprobs`` (n, T, V) fp32 → the top-k ids, their levels and the remaining mass's level,
    ordered by (level, id): the canonical payload content for those positions."""
    vals, ids = logprobs.float().topk(k, dim=-1)
    rest = torch.logsumexp(logprobs.float().scatter(-1, ids, float("-inf")), dim=-1)
    q, rest_q = quantize(vals, bits), quantize(rest, bits)
    order = (q * logprobs.shape[-1] + ids).argsort(dim=-1)
    ids, q = ids.gather(-1, order), q.gather(-1, order)
    return TeacherOutputs(ids.cpu().numpy(), q.cpu().numpy(), rest_q.cpu().numpy())


# ---- how a validator checks it ------------------------------------------------------------


def draw_checks(entropy: bytes, uid: int, payload_sha256: str, positions: int, count: int) -> list[int]:
    """``min(count, positions)`` distinct flat positions (sample * T + t), ascending, drawn with
    sha256(domain ‖ entropy ‖ uid ‖ payload hash): unknown to the miner until it has uploaded."""
    seed = hashlib.sha256(_CHECK_DOMAIN + bytes(entropy) + uid.to_bytes(4, "little") + bytes.fromhex(payload_sha256))
    return sorted(random.Random(seed.digest()).sample(range(positions), min(count, positions)))


@dataclass(frozen=True)
class CheckResult:
    """Per checked position: ``deviation`` in nats beyond the quantization bound (the largest of
    the listed values, the remaining mass and half the top-k margin), ``ok`` = deviation ≤ tol."""

    deviation: np.ndarray
    ok: np.ndarray


def check_positions(ids: np.ndarray, q: np.ndarray, rest_q: np.ndarray, logprobs: Tensor, bits: int,
                    tolerance: float) -> CheckResult:
    """The verification rule for m positions: the miner's ``ids`` (m, k), ``q`` (m, k), ``rest_q`` (m,)
    against the validator's recomputed ``logprobs`` (m, V) fp32.

    - each listed id's recomputed log-prob lies within step/2 of the miner's value (a value at
      the last level, the clip, only bounds it from above);
    - so does the log of the recomputed mass outside the listed ids;
    - the listed ids are a top-k: no unlisted id beats the least listed one (or the clip
      level) by more than 2 × tolerance (near-ties may swap).
    """
    step, top = quant_step(bits), (1 << bits) - 1
    lp = logprobs.float()
    idx = torch.as_tensor(ids, dtype=torch.int64, device=lp.device)
    listed = lp.gather(-1, idx)
    value_dev = _level_deviation(listed, torch.as_tensor(q, device=lp.device), step, top).amax(-1)
    others = lp.scatter(-1, idx, float("-inf"))
    rest = torch.logsumexp(others, dim=-1)
    rest_dev = _level_deviation(rest, torch.as_tensor(rest_q, device=lp.device), step, top)
    floor = -top * step
    topk_dev = (others.amax(-1) - listed.amin(-1).clamp(min=floor)) / 2
    dev = torch.stack([value_dev, rest_dev, topk_dev]).amax(0).nan_to_num(nan=float("inf")).double().cpu().numpy()
    return CheckResult(dev, dev <= tolerance)


def _level_deviation(value: Tensor, q: Tensor, step: float, top: int) -> Tensor:
    """Nats by which ``value`` lies outside the interval its level ``q`` stands for."""
    claimed = q.to(value.dtype) * -step
    two_sided = (value - claimed).abs() - step / 2
    one_sided = value - claimed - step / 2  # the clip level: any value at or below it
    return torch.where(q >= top, one_sided, two_sided).clamp(min=0.0)


@dataclass(frozen=True)
class CheckSummary:
    """A submission's checks: how many failed (deviation > tolerance), and their median deviation."""

    checks: int
    failed: int
    median: float
    max: float


def summarize_checks(deviation: np.ndarray, tolerance: float) -> CheckSummary:
    dev = np.asarray(deviation, dtype=np.float64)
    if dev.size == 0:
        return CheckSummary(0, 0, 0.0, 0.0)
    return CheckSummary(int(dev.size), int((dev > tolerance).sum()), float(np.median(dev)), float(dev.max()))


def judge_outputs(uid: int, positions: int, max_positions: int, checks: CheckSummary,
                  median_tolerance: float) -> criteria.Verdict:
    """Zero for one failed check (reason "mismatch") or a median deviation above
    ``median_tolerance`` ("drift"), with evidence 0; otherwise ``positions / max_positions``
    (evidence 1): verified throughput is what pays."""
    if checks.failed > 0 or positions <= 0:
        return criteria.Verdict(uid, 0.0, "mismatch", 0.0, 0.0, 0.0)
    if checks.median > median_tolerance:
        return criteria.Verdict(uid, 0.0, "drift", 0.0, 0.0, 0.0)
    share = min(1.0, positions / max(max_positions, 1))
    return criteria.Verdict(uid, share, "ok", 1.0, share, 0.0)


def detection_probability(fraction: float, checks: int) -> float:
    """Chance that ``checks`` uniform draws (with replacement: a lower bound for ours, drawn
    without) hit at least one of a ``fraction`` of faked positions: 1 − (1 − f)^c."""
    return 1.0 - (1.0 - fraction) ** checks


# ---- the student's loss -------------------------------------------------------------------


def topk_kl_loss(student_logits: Tensor, ids: Tensor, logp_topk: Tensor, logp_rest: Tensor,
                 targets: Tensor | None = None, hard_weight: float = 0.0) -> Tensor:
    """Mean over positions of KL(teacher ‖ student) on k + 1 outcomes (the listed ids and the
    rest), the teacher's quantized probabilities renormalised; ``hard_weight`` mixes in the
    cross-entropy on ``targets``. Shapes: logits (B, T, V), ids/logp_topk (B, T, k), rest (B, T)."""
    logq = F.log_softmax(student_logits.float(), dim=-1)
    logq_k = logq.gather(-1, ids)
    logq_rest = torch.log(-torch.expm1(torch.logsumexp(logq_k, -1).clamp(max=-1e-7)))
    logp = torch.cat([logp_topk, logp_rest.unsqueeze(-1)], dim=-1).float()
    logp = logp - torch.logsumexp(logp, dim=-1, keepdim=True)
    logq_all = torch.cat([logq_k, logq_rest.unsqueeze(-1)], dim=-1)
    kl = (logp.exp() * (logp - logq_all)).sum(-1).mean()
    return _mix(kl, logq, targets, hard_weight)


def full_kl_loss(student_logits: Tensor, teacher_logprobs: Tensor, targets: Tensor | None = None,
                 hard_weight: float = 0.0) -> Tensor:
    """KL(teacher ‖ student) over the whole vocabulary (exact logits: the benchmarks' upper bound)."""
    logq = F.log_softmax(student_logits.float(), dim=-1)
    logp = teacher_logprobs.float()
    kl = (logp.exp() * (logp - logq)).sum(-1).mean()
    return _mix(kl, logq, targets, hard_weight)


def _mix(kl: Tensor, logq: Tensor, targets: Tensor | None, hard_weight: float) -> Tensor:
    if hard_weight <= 0 or targets is None:
        return kl
    ce = F.nll_loss(logq.reshape(-1, logq.shape[-1]), targets.reshape(-1))
    return (1.0 - hard_weight) * kl + hard_weight * ce


__all__ = ["CheckResult", "CheckSummary", "OUTPUTS_REASONS", "OUTPUTS_VERSION", "OutputsRules", "check_positions",
           "criteria_hash_of", "dequantize", "detection_probability", "draw_checks", "full_kl_loss",
           "judge_outputs", "outputs_criteria_hash", "outputs_spec", "quantize", "rules_of",
           "summarize_checks", "teacher_topk", "topk_kl_loss"]
