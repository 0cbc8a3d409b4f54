"""Aggregation and the outer step: hand-computed tables, determinism, averaging. Fast (< 3 s)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from protocol.outer import (
    OuterOptimizer,
    aggregate,
    clip_to_median_norm,
    update_norm,
)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


class TwoParams(nn.Module):
    def __init__(self, a: list[float], b: list[float]) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))
        self.b = nn.Parameter(torch.tensor(b))


def test_update_norm_is_global_l2() -> None:
    assert update_norm({"x": t(3.0), "y": t(4.0)}) == pytest.approx(5.0)
    assert update_norm({}) == 0.0


def test_clip_scales_only_updates_above_the_median() -> None:
    # norms 1, 2, 10 -> median 2; the third is scaled by 2/10, the others untouched
    updates = [{"x": t(1.0, 0.0)}, {"x": t(0.0, 2.0)}, {"x": t(6.0, 8.0)}]
    clipped = clip_to_median_norm(updates)
    assert clipped[0]["x"].tolist() == [1.0, 0.0]
    assert clipped[1]["x"].tolist() == [0.0, 2.0]
    assert clipped[2]["x"].tolist() == pytest.approx([1.2, 1.6])
    assert updates[2]["x"].tolist() == [6.0, 8.0]  # inputs untouched
    assert clip_to_median_norm([]) == []


def test_clip_even_count_uses_the_middle_mean() -> None:
    # norms 1 and 3 -> median 2; the larger is scaled to norm 2
    clipped = clip_to_median_norm([{"x": t(1.0)}, {"x": t(-3.0)}])
    assert clipped[1]["x"].tolist() == pytest.approx([-2.0])


def test_aggregate_is_the_mean_after_clipping() -> None:
    # norms 1, 1, 4 -> median 1; third becomes (0, 1). mean x = (1 + 0 + 0)/3, y = (0 + 1 + 1)/3
    updates = [{"w": t(1.0, 0.0)}, {"w": t(0.0, 1.0)}, {"w": t(0.0, 4.0)}]
    assert aggregate(updates)["w"].tolist() == pytest.approx([1 / 3, 2 / 3])


def test_weighted_aggregate_and_missing_names_count_as_zero() -> None:
    # equal norms (no clip); weights 3:1 -> a = .75*1 + .25*(-1) = .5
    out = aggregate([{"a": t(1.0)}, {"a": t(-1.0)}], weights=[3.0, 1.0])
    assert out["a"].tolist() == pytest.approx([0.5])
    only_second = aggregate([{"a": t(1.0)}, {"a": t(0.0), "b": t(1.0)}])
    # norms 1, 1: b's mean = (0 + 1)/2
    assert only_second["b"].tolist() == pytest.approx([0.5])


def test_aggregate_edge_cases_and_errors() -> None:
    assert aggregate([]) == {}
    with pytest.raises(ValueError, match="shapes"):
        aggregate([{"a": t(1.0)}, {"a": t(1.0, 2.0)}])
    with pytest.raises(ValueError, match="weights"):
        aggregate([{"a": t(1.0)}], weights=[0.0])
    with pytest.raises(ValueError, match="2 weights for 1"):
        aggregate([{"a": t(1.0)}], weights=[1.0, 1.0])


def test_plain_step_is_theta_minus_lr_g() -> None:
    model = TwoParams([1.0, 2.0], [3.0])
    OuterOptimizer(lr=0.5).apply(model, {"a": t(2.0, -2.0)})
    assert model.a.tolist() == [0.0, 3.0]
    assert model.b.tolist() == [3.0]  # missing name: zero update


def test_momentum_matches_hand_computation() -> None:
    # lr .5, m .9. g1 = 1: buf 1, θ = 0 - .5 = -.5. g2 = 2: buf .9 + 2 = 2.9, θ = -.5 - 1.45 = -1.95
    # g3 missing: buf 2.61, θ = -1.95 - 1.305 = -3.255
    model = TwoParams([0.0], [0.0])
    opt = OuterOptimizer(lr=0.5, momentum=0.9)
    for update in ({"a": t(1.0)}, {"a": t(2.0)}, {}):
        opt.apply(model, update)
    assert model.a.item() == pytest.approx(-3.255, abs=1e-6)
    assert opt.buffers["a"].item() == pytest.approx(2.61, abs=1e-6)
    assert "b" not in opt.buffers


def test_nesterov_matches_hand_computation() -> None:
    # lr 1, m .5. g1 = 1: buf 1, step = 1 + .5 = 1.5 -> θ = -1.5
    # g2 = 1: buf 1.5, step = 1 + .75 = 1.75 -> θ = -3.25
    model = TwoParams([0.0], [0.0])
    opt = OuterOptimizer(lr=1.0, momentum=0.5, nesterov=True)
    opt.apply(model, {"a": t(1.0)})
    assert model.a.item() == pytest.approx(-1.5)
    opt.apply(model, {"a": t(1.0)})
    assert model.a.item() == pytest.approx(-3.25)


def test_apply_rejects_bad_aggregates_without_touching_the_model() -> None:
    model = TwoParams([1.0], [2.0])
    opt = OuterOptimizer()
    for bad, message in (
        ({"a": t(1.0), "zzz": t(1.0)}, "unknown parameter"),
        ({"a": t(1.0), "b": t(1.0, 2.0)}, "shape"),
        ({"a": t(1.0), "b": t(math.nan)}, "non-finite"),
    ):
        with pytest.raises(ValueError, match=message):
            opt.apply(model, bad)
        assert model.a.tolist() == [1.0] and model.b.tolist() == [2.0]


def test_optimizer_rejects_bad_hyperparameters() -> None:
    with pytest.raises(ValueError):
        OuterOptimizer(lr=0.0)
    with pytest.raises(ValueError):
        OuterOptimizer(momentum=1.0)
    with pytest.raises(ValueError):
        OuterOptimizer(nesterov=True)


def _random_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(37, 53), nn.GELU(), nn.Linear(53, 11))


def test_two_nodes_end_bit_identical() -> None:
    # Two nodes with the same start and the same stream of aggregates, one holding its
    # model in float64, agree bit-for-bit on the fp32 values after several steps.
    node_a, node_b = _random_model(0), _random_model(0).double()
    opt_a = OuterOptimizer(lr=0.7, momentum=0.9, nesterov=True)
    opt_b = OuterOptimizer(lr=0.7, momentum=0.9, nesterov=True)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        updates = [{n: torch.randn(p.shape, generator=gen) * 1e-3 for n, p in
                    node_a.named_parameters()} for _ in range(3)]
        agg = aggregate(updates)
        opt_a.apply(node_a, agg)
        opt_b.apply(node_b, {k: v.clone() for k, v in agg.items()})
    for (name, pa), (_, pb) in zip(node_a.named_parameters(), node_b.named_parameters(), strict=True):
        assert torch.equal(pa.detach(), pb.detach().float()), name


def test_state_dict_round_trip_continues_identically() -> None:
    model_a, model_b = _random_model(2), _random_model(2)
    opt_a = OuterOptimizer(lr=0.5, momentum=0.8)
    update = {n: torch.full(p.shape, 0.01) for n, p in model_a.named_parameters()}
    opt_a.apply(model_a, update)
    opt_b = OuterOptimizer()
    opt_b.load_state_dict(opt_a.state_dict())
    model_b.load_state_dict(model_a.state_dict())
    opt_a.apply(model_a, update)
    opt_b.apply(model_b, update)
    for pa, pb in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    with pytest.raises(ValueError, match="lacks"):
        opt_b.load_state_dict({"lr": 1.0})


def test_lr_one_reproduces_averaging_of_miner_models() -> None:
    # Miners' deltas have equal norms (the second is a permutation of the first), so no
    # clipping: θ - mean(θ - θ_k) must equal mean(θ_k).
    start = _random_model(3)
    gen = torch.Generator().manual_seed(4)
    delta1 = {n: torch.randn(p.shape, generator=gen) * 0.01 for n, p in start.named_parameters()}
    delta2 = {n: d.flatten().flip(0).reshape(d.shape) for n, d in delta1.items()}
    miners = [{n: p.detach() - d[n] for n, p in start.named_parameters()} for d in (delta1, delta2)]
    OuterOptimizer(lr=1.0).apply(start, aggregate([delta1, delta2]))
    for name, param in start.named_parameters():
        expected = (miners[0][name] + miners[1][name]) / 2
        assert torch.allclose(param.detach(), expected, atol=1e-6), name


def test_per_position_mean_averages_each_entry_over_its_senders_only() -> None:
    # two sparse updates of equal norm (no clipping): overlap only at position 1
    a = {"w": torch.tensor([2.0, 2.0, 0.0, 0.0])}
    b = {"w": torch.tensor([0.0, 2.0, 2.0, 0.0])}
    plain = aggregate([a, b])["w"]
    per = aggregate([a, b], per_position=True)["w"]
    assert torch.equal(plain, torch.tensor([1.0, 2.0, 1.0, 0.0]))
    assert torch.equal(per, torch.tensor([2.0, 2.0, 2.0, 0.0]))  # nobody sent 3: stays 0


def test_per_position_respects_weights_and_matches_mean_on_dense_updates() -> None:
    a = {"w": torch.tensor([1.0, 3.0])}
    b = {"w": torch.tensor([3.0, 1.0])}
    assert torch.equal(aggregate([a, b], per_position=True)["w"], aggregate([a, b])["w"])
    c = {"w": torch.tensor([4.0, 0.0])}
    d = {"w": torch.tensor([0.0, 4.0])}
    # each position has one sender: the other's weight does not dilute it
    assert torch.equal(aggregate([c, d], weights=[1.0, 3.0])["w"], torch.tensor([1.0, 3.0]))
    assert torch.equal(aggregate([c, d], weights=[1.0, 3.0], per_position=True)["w"],
                       torch.tensor([4.0, 4.0]))
