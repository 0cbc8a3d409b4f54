"""protocol.distill: the outputs-mode rules (top-k, checks, score, loss, hash) and their docs."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from protocol import criteria
from protocol.distill import (
    OUTPUTS_VERSION,
    check_positions,
    criteria_hash_of,
    detection_probability,
    draw_checks,
    full_kl_loss,
    judge_outputs,
    outputs_criteria_hash,
    rules_of,
    summarize_checks,
    teacher_topk,
    topk_kl_loss,
)
from protocol.outputs_codec import quant_step
from protocol.subnet import SubnetConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "criteria.md"
OUT_CFG = dict(task="outputs", teacher="t.safetensors", teacher_hash="ab" * 32)


def logprobs(n: int = 64, vocab: int = 40, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(n, vocab, generator=gen) * scale, -1)


def check(lp_miner: torch.Tensor, lp_validator: torch.Tensor, k: int = 6, bits: int = 8, tol: float = 0.05):
    out = teacher_topk(lp_miner[None], k, bits)
    return check_positions(out.ids[0], out.q[0], out.rest_q[0], lp_validator, bits, tol)


def test_topk_is_canonical_and_decodes_to_the_values() -> None:
    lp = logprobs()
    out = teacher_topk(lp[None], 6, 8)
    key = out.q.astype(np.int64) * 40 + out.ids
    assert (np.diff(key, axis=-1) > 0).all()
    assert set(out.ids[0, 0]) == set(lp[0].topk(6).indices.tolist())
    back = -out.q[0].astype(np.float64) * quant_step(8)
    assert np.abs(back - lp.gather(-1, torch.as_tensor(out.ids[0], dtype=torch.long)).numpy()).max() <= quant_step(8) / 2 + 1e-6


def test_honest_outputs_pass_and_noise_within_tolerance_passes() -> None:
    lp = logprobs()
    assert check(lp, lp).ok.all()
    noisy = torch.log_softmax(lp + 0.02 * torch.randn(lp.shape, generator=torch.Generator().manual_seed(1)), -1)
    result = check(noisy, lp, tol=0.1)
    assert result.ok.all() and result.deviation.max() <= 0.1


def test_wrong_values_fail() -> None:
    lp = logprobs()
    other = logprobs(seed=5)
    assert not check(other, lp).ok.any()  # another distribution
    shifted = torch.log_softmax(lp + torch.where(torch.arange(40) == 3, 0.5, 0.0), -1)
    result = check(shifted, lp)
    changed = (lp.topk(6).indices == 3).any(-1).numpy()  # positions listing id 3 (or its neighbours' mass)
    assert not result.ok[changed].any()


def test_near_ties_may_swap_but_a_missing_top_token_fails() -> None:
    base = torch.full((1, 10), -6.0)
    base[0, :3] = torch.tensor([-0.5, -1.5, -1.5001])
    base = torch.log_softmax(base, -1)
    swapped = base.clone()
    swapped[0, 1], swapped[0, 2] = base[0, 2], base[0, 1]
    assert check(swapped, base, k=2).ok.all()  # the miner listed id 2 for a near-tie with id 1
    ids, q = np.array([[0, 5]]), np.array([[8, 80]])  # skips id 1 (p ≈ 0.2) for a tail id
    rest = teacher_topk(base[None], 2, 8).rest_q[0]
    assert not check_positions(ids, q, rest, base, 8, 0.05).ok.any()


def test_clipped_values_and_rest_mass() -> None:
    lp = torch.log_softmax(torch.tensor([[0.0, -1.0, -30.0, -31.0, -32.0]]), -1)
    out = teacher_topk(lp[None], 3, 8)
    assert out.q[0, 0, -1] == 255  # id 2 is below the 16-nat range: clipped
    assert check_positions(out.ids[0], out.q[0], out.rest_q[0], lp, 8, 0.05).ok.all()
    fake_rest = out.rest_q[0].copy()
    fake_rest[0] = 0  # claims the rest holds all the mass
    assert not check_positions(out.ids[0], out.q[0], fake_rest, lp, 8, 0.05).ok.any()


def test_draw_checks_is_secret_keyed_and_distinct() -> None:
    a = draw_checks(b"e" * 32, 3, "11" * 32, 1000, 48)
    assert a == sorted(set(a)) and len(a) == 48 and max(a) < 1000
    assert a == draw_checks(b"e" * 32, 3, "11" * 32, 1000, 48)
    assert a != draw_checks(b"f" * 32, 3, "11" * 32, 1000, 48)
    assert a != draw_checks(b"e" * 32, 4, "11" * 32, 1000, 48)
    assert a != draw_checks(b"e" * 32, 3, "12" * 32, 1000, 48)
    assert draw_checks(b"e", 1, "11" * 32, 10, 48) == list(range(10))


def test_judge_pays_verified_throughput_and_zeroes_any_failure() -> None:
    clean = summarize_checks(np.array([0.0, 0.01, 0.0]), 0.6)
    assert (clean.checks, clean.failed, clean.median) == (3, 0, 0.0)
    assert judge_outputs(1, 512, 1024, clean, 0.02).score == 0.5
    ok = judge_outputs(1, 1024, 1024, clean, 0.02)
    assert (ok.score, ok.reason, ok.evidence) == (1.0, "ok", 1.0)
    bad = judge_outputs(1, 1024, 1024, summarize_checks(np.array([0.0, 0.7, 0.0]), 0.6), 0.02)
    assert (bad.score, bad.reason, bad.evidence) == (0.0, "mismatch", 0.0)
    drift = judge_outputs(1, 1024, 1024, summarize_checks(np.array([0.05, 0.04, 0.0]), 0.6), 0.02)
    assert (drift.score, drift.reason) == (0.0, "drift")
    assert detection_probability(0.1, 48) == pytest.approx(1 - 0.9**48)


def test_kl_losses() -> None:
    teacher = logprobs(n=12, vocab=30).reshape(2, 6, 30)
    out = teacher_topk(teacher, 29, 12)  # nearly everything listed, fine steps
    ids = torch.as_tensor(out.ids, dtype=torch.long)
    lp_k = torch.as_tensor(out.q, dtype=torch.float32) * -quant_step(12)
    lp_rest = torch.as_tensor(out.rest_q, dtype=torch.float32) * -quant_step(12)
    assert topk_kl_loss(teacher.clone(), ids, lp_k, lp_rest).item() == pytest.approx(0.0, abs=1e-3)
    assert full_kl_loss(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-6)
    student = torch.zeros(2, 6, 30, requires_grad=True)
    loss = topk_kl_loss(student, ids, lp_k, lp_rest, torch.zeros(2, 6, dtype=torch.long), hard_weight=0.3)
    loss.backward()
    assert loss.item() > 0 and student.grad is not None and student.grad.abs().sum() > 0


def test_criteria_hash_covers_every_rule_and_keeps_gradient_mode() -> None:
    assert criteria_hash_of(SubnetConfig()) == criteria.criteria_hash()
    cfg = SubnetConfig(**OUT_CFG)
    base = criteria_hash_of(cfg)
    assert base != criteria.criteria_hash()
    for field, value in (("outputs_topk", 8), ("outputs_value_bits", 6), ("outputs_spot_checks", 12),
                         ("outputs_tolerance", 0.2), ("outputs_median_tolerance", 0.1),
                         ("outputs_samples", 64), ("seq_len", 32),
                         ("distill_hard_weight", 0.1), ("teacher_hash", "cd" * 32)):
        assert criteria_hash_of(SubnetConfig(**{**OUT_CFG, field: value})) != base, field


def test_outputs_config_needs_its_teacher_and_keeps_gradient_hashes() -> None:
    with pytest.raises(ValueError, match="teacher"):
        SubnetConfig(task="outputs")
    cfg = SubnetConfig(**OUT_CFG)
    assert cfg.outer_lr == 1.0 and cfg.samples_per_window == cfg.outputs_samples
    assert SubnetConfig(**OUT_CFG, outer_lr=0.5).outer_lr == 0.5
    assert SubnetConfig().config_hash() != SubnetConfig(outputs_topk=8).config_hash()  # non-defaults count


def _doc_section() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text[text.index("## Outputs mode"):]


def test_docs_state_the_outputs_rules_exactly() -> None:
    section = _doc_section()
    cfg = SubnetConfig(**OUT_CFG)
    rules = rules_of(cfg)
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+?) \|", section, flags=re.M))
    defaults = {"outputs_topk": rules.topk, "outputs_value_bits": rules.value_bits,
                "outputs_spot_checks": rules.spot_checks, "outputs_tolerance": rules.tolerance,
                "outputs_median_tolerance": rules.median_tolerance,
                "outputs_samples": rules.samples, "distill_hard_weight": rules.hard_weight}
    for name, value in defaults.items():
        assert name in rows and float(rows[name]) == float(value), name
    assert f"OUTPUTS_VERSION = {OUTPUTS_VERSION}" in section
    assert f"{math.floor(detection_probability(0.1, rules.spot_checks) * 1000) / 10:.1f} %" in section
    assert outputs_criteria_hash(rules) != criteria.criteria_hash()
