"""Outputs mode: verify miners' teacher outputs by recomputing the teacher at secret positions.

For each submission chosen for evaluation (``criteria.select_for_evaluation``, at most
``max_evaluations``), ``outputs_spot_checks`` positions are drawn among the ones it delivered
(``protocol.distill.draw_checks``: the validator's window entropy and the submission's payload
hash, so nobody knows them before the upload is in); the teacher is run on each checked
sample up to the last checked position, in fp32 whatever the device (so the only numerical
difference is the miner's), and ``protocol.distill.check_positions`` compares. One failed
check zeroes the submission and keeps it out of the student's training, and so does a median
deviation above ``outputs_median_tolerance`` (``protocol.distill.judge_outputs``).

Cost: a check at position t costs a forward pass over t + 1 tokens (about T/2 on average),
so checking c positions of n delivered samples costs about c / (2n) of what labelling them
cost the miner (docs/outputs.md).

Example:
    >>> verifier = OutputsVerifier(cfg, dataset, teacher)
    >>> result = verifier.verify_window(state, subs, last_evaluated={}, secret=b"...")
    >>> result.checks[3].failed, result.verdicts[3].score
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from node.model_state import ModelState
from node.teacher import Teacher
from protocol import criteria
from protocol.data import Dataset
from protocol.distill import (
    CheckResult,
    check_positions,
    draw_checks,
    judge_outputs,
    outputs_spec,
    summarize_checks,
)
from protocol.messages import Aggregate
from protocol.outputs_codec import TeacherOutputs, decode
from protocol.subnet import SubnetConfig
from protocol.windows import assigned_samples
from validator.evaluate import WindowEvaluation, window_entropy
from validator.store import StoredSubmission
from validator.student import StudentTrainer, build_student_update

CHECK_BATCH = 8  # checked samples per forward pass: similar prefix lengths, little padding waste


@dataclass(frozen=True)
class OutputsCheck:
    """What verifying one submission found and cost (``tokens``: teacher positions computed)."""

    uid: int
    positions: int
    checks: int
    failed: int
    max_deviation: float
    median_deviation: float
    tokens: int
    seconds: float

    def record(self) -> dict[str, object]:
        return {"positions": self.positions, "checks": self.checks, "failed": self.failed,
                "max_dev": round(self.max_deviation, 4), "median_dev": round(self.median_deviation, 5),
                "tokens": self.tokens, "seconds": round(self.seconds, 3)}


@dataclass
class OutputsEvaluation(WindowEvaluation):
    """A window's verification: the verdicts (as in gradient mode), what each check found, and
    the accepted outputs with the sample indices they label (what the student trains on)."""

    checks: dict[int, OutputsCheck] = field(default_factory=dict)
    accepted: dict[int, tuple[list[int], TeacherOutputs]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Recomputed:
    logprobs: torch.Tensor  # (m, V) fp32, in the order of the checked positions
    tokens: int


class OutputsVerifier:
    """Verifies the outputs submitted in a window against the teacher."""

    def __init__(self, cfg: SubnetConfig, dataset: Dataset, teacher: Teacher,
                 params: criteria.CriteriaParams = criteria.DEFAULT_PARAMS) -> None:
        self.cfg, self.dataset, self.teacher, self.params = cfg, dataset, teacher, params
        self.population = dataset.num_samples(cfg.seq_len)
        self.spec = outputs_spec(cfg)

    def verify_window(self, state: ModelState, subs: Sequence[StoredSubmission], *,
                      last_evaluated: Mapping[int, int], secret: bytes, **_: object) -> OutputsEvaluation:
        """Select, check and judge the submissions of ``state.window``."""
        window, entropy = state.window, window_entropy(secret, state.window)
        out = OutputsEvaluation()
        chosen = criteria.select_for_evaluation(
            [s.uid for s in subs], last_evaluated, self.cfg.max_evaluations, window, entropy, self.params)
        by_uid = {s.uid: s for s in subs}
        max_positions = self.cfg.samples_per_window * self.cfg.seq_len
        for uid in chosen:
            sub = by_uid[uid]
            outputs = self.decode(sub)
            indices = self.delivered_indices(window, sub, outputs)
            check, result = self.verify(sub, outputs, indices, entropy)
            out.checks[uid] = check
            summary = summarize_checks(result.deviation, self.cfg.outputs_tolerance)
            out.verdicts[uid] = judge_outputs(uid, check.positions, max_positions, summary,
                                              self.cfg.outputs_median_tolerance)
            out.evaluations[uid] = criteria.Evaluation(uid, sub.hotkey, gain=out.verdicts[uid].gain, own_z=0.0)
            if out.verdicts[uid].score > 0:
                out.accepted[uid] = (indices, outputs)
        return out

    def decode(self, sub: StoredSubmission) -> TeacherOutputs:
        """The teacher outputs of a stored submission (its payload passed this decode at intake)."""
        return decode(sub.payload, self.spec)

    def delivered_indices(self, window: int, sub: StoredSubmission, outputs: TeacherOutputs) -> list[int]:
        """The samples the submission labels: the first n of the uid's assignment."""
        cfg = self.cfg
        assigned = assigned_samples(cfg.seed_bytes, window, sub.uid, cfg.samples_per_window, self.population)
        return assigned[: outputs.n_samples]

    def verify(self, sub: StoredSubmission, outputs: TeacherOutputs, indices: Sequence[int],
               entropy: bytes) -> tuple[OutputsCheck, CheckResult]:
        """Recompute the drawn positions of one submission and apply the rule."""
        started = time.monotonic()
        k = self.cfg.outputs_topk
        flat = np.asarray(draw_checks(entropy, sub.uid, sub.header.payload_sha256, outputs.positions,
                                      self.cfg.outputs_spot_checks), dtype=np.int64)
        recomputed = self.recompute(indices, flat)
        result = check_positions(outputs.ids.reshape(-1, k)[flat], outputs.q.reshape(-1, k)[flat],
                                 outputs.rest_q.reshape(-1)[flat], recomputed.logprobs,
                                 self.cfg.outputs_value_bits, self.cfg.outputs_tolerance)
        summary = summarize_checks(result.deviation, self.cfg.outputs_tolerance)
        check = OutputsCheck(sub.uid, outputs.positions, summary.checks, summary.failed, summary.max, summary.median,
                             recomputed.tokens, time.monotonic() - started)
        return check, result

    def recompute(self, indices: Sequence[int], flat: np.ndarray) -> _Recomputed:
        """The teacher's log-probabilities at the flat positions (sample * T + t) of the samples
        ``indices``: each checked sample runs up to its last checked position, samples of
        similar length batched together."""
        t_len = self.cfg.seq_len
        rows, cols = flat // t_len, flat % t_len
        ends = {int(r): int(cols[rows == r].max()) + 1 for r in np.unique(rows)}
        order = sorted(ends, key=lambda r: -ends[r])
        found: dict[int, torch.Tensor] = {}
        tokens = 0
        for i in range(0, len(order), CHECK_BATCH):
            group = order[i : i + CHECK_BATCH]
            length = ends[group[0]]
            batch = self.dataset.batch([indices[r] for r in group], t_len)[:, :length]
            logp = self.teacher.logprobs(batch)
            tokens += len(group) * length
            for j, r in enumerate(group):
                found[r] = logp[j]
        stacked = torch.stack([found[int(r)][int(c)] for r, c in zip(rows, cols, strict=True)]) if len(flat) else torch.zeros(0)
        return _Recomputed(stacked, tokens)


class OutputsTask:
    """Outputs mode's part of a validator: it verifies a window's submissions, trains the student
    on what passed while this validator leads (the step is the window's aggregate), and adds the
    checks and the student's figures to the window's metrics line."""

    def __init__(self, verifier: OutputsVerifier, student: StudentTrainer) -> None:
        self.verifier, self.student = verifier, student
        self._figures: dict[str, float | None] = {}

    @classmethod
    def build(cls, cfg: SubnetConfig, dataset: Dataset, params: criteria.CriteriaParams, *, device: str,
              teacher_path: Path | None = None, teacher: Teacher | None = None) -> OutputsTask:
        """The teacher (``teacher``, else the one at ``teacher_path`` or the config's path, checked
        against the config and run in fp32), its verifier and the student trainer."""
        if teacher is None:
            from node.teacher import load_teacher

            teacher = load_teacher(cfg, device, teacher_path, dtype=torch.float32)
        return cls(OutputsVerifier(cfg, dataset, teacher, params), StudentTrainer.for_subnet(cfg, device))

    def aggregate(self, state: ModelState, result: OutputsEvaluation, hotkeys: Mapping[int, str],
                  cfg: SubnetConfig, dataset: Dataset) -> tuple[Aggregate, bytes]:
        """The lead's Aggregate(w) and payload: the student trained on the accepted outputs."""
        header, payload, self._figures = build_student_update(state, result.accepted, hotkeys, cfg, self.student,
                                                              dataset)
        return header, payload

    def metrics(self, result: OutputsEvaluation) -> dict[str, object]:
        """``checks`` per uid and the last student step's figures, for the metrics line."""
        figures, self._figures = self._figures, {}
        return {"checks": {str(k): c.record() for k, c in result.checks.items()}, "student": figures}
