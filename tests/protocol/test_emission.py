"""Yuma consensus: hand-worked tables plus a property test. All fast (< 2 s)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.emission import (
    EpochInputs,
    YumaParams,
    normalize,
    validator_permits,
    weighted_median_column,
    yuma_epoch,
)

F64 = torch.float64


def make_inputs(
    weights: list[list[float]],
    stake: list[float],
    *,
    block: int = 100,
    budget: float = 1.0,
    last_update: list[int] | None = None,
    registered_at: list[int] | None = None,
    weights_set_at: list[int] | None = None,
    bonds: torch.Tensor | None = None,
) -> EpochInputs:
    n = len(stake)
    return EpochInputs(
        weights=torch.tensor(weights, dtype=F64).reshape(n, n),
        stake=torch.tensor(stake, dtype=F64),
        last_update=torch.tensor(last_update or [block] * n),
        registered_at=torch.tensor(registered_at or [0] * n),
        weights_set_at=torch.tensor(weights_set_at or [block] * n),
        bonds=torch.zeros(n, n, dtype=F64) if bonds is None else bonds,
        current_block=block,
        emission_budget=budget,
    )


# uids 0, 1, 2 validate; 3, 4 mine; 5 mines but nobody weights it.
# Validators 0 and 1 split evenly between miners 3 and 4; validator 2 is an outlier that
# puts everything on miner 3.
AGREE = [0.0, 0.0, 0.0, 1.0, 1.0, 0.0]
OUTLIER = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
ZERO = [0.0] * 6
THREE_VALIDATORS = [AGREE, AGREE, OUTLIER, ZERO, ZERO, ZERO]


def approx(t: torch.Tensor) -> list[float]:
    return pytest.approx(t.tolist(), abs=1e-12)


# ---- weighted median -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "stake", "kappa", "expected"),
    [
        # sorted desc: .9 (1/3 of stake), .5 (2/3 >= .5) -> .5
        ([0.1, 0.5, 0.9], [1.0, 1.0, 1.0], 0.5, 0.5),
        # exact half: support for .8 is .5 >= .5 -> the upper value
        ([0.2, 0.8], [0.5, 0.5], 0.5, 0.8),
        # kappa 1: only the weight every staked row gives counts -> the minimum
        ([0.2, 0.8], [0.5, 0.5], 1.0, 0.2),
        # a zero-stake row's weight has no say
        ([10.0, 1.0], [0.0, 1.0], 0.5, 1.0),
        # a big stake holder decides alone: .9 has .7 of the stake
        ([0.9, 0.1, 0.1], [0.7, 0.2, 0.1], 0.5, 0.9),
        # nobody has stake -> 0
        ([0.3, 0.4], [0.0, 0.0], 0.5, 0.0),
    ],
)
def test_weighted_median_column_table(column, stake, kappa, expected) -> None:
    weights = torch.tensor(column, dtype=F64)[:, None]
    got = weighted_median_column(weights, torch.tensor(stake, dtype=F64), kappa)
    assert got.tolist() == pytest.approx([expected])


def test_normalize_leaves_zero_rows_alone() -> None:
    m = torch.tensor([[1.0, 3.0], [0.0, 0.0]], dtype=F64)
    assert normalize(m, dim=1).tolist() == [[0.25, 0.75], [0.0, 0.0]]
    assert normalize(torch.zeros(3, dtype=F64)).tolist() == [0.0, 0.0, 0.0]


def test_permits_top_k_by_stake_ties_to_lower_uid_and_no_zero_stake() -> None:
    stake = torch.tensor([1.0, 5.0, 5.0, 0.0, 2.0], dtype=F64)
    assert validator_permits(stake, 2).tolist() == [False, True, True, False, False]
    assert validator_permits(stake, 10).tolist() == [True, True, True, False, True]
    # a tie at the cut: uid 1 wins over uid 2
    assert validator_permits(stake, 1).tolist() == [False, True, False, False, False]


# ---- the epoch -------------------------------------------------------------------------


def test_outlier_weight_is_clipped_to_consensus() -> None:
    # active stake: [.4, .4, .2, 0, 0, 0]; rows normalize to .5/.5 (agree) and 1/0 (outlier)
    # C_3: 1.0 (.2), .5 (.6 >= .5) -> .5;  C_4: .5, .5 -> .5 (outlier's 0 never reached)
    # outlier's 1.0 on miner 3 clipped to .5 -> validator_trust [1, 1, .5]
    # ranks_3 = .4*.5 + .4*.5 + .2*.5 = .5; ranks_4 = .4*.5 + .4*.5 = .4; incentive = [5/9, 4/9]
    # preranks_3 = .4*.5 + .4*.5 + .2*1 = .6 -> trust_3 = .5/.6
    result = yuma_epoch(make_inputs(THREE_VALIDATORS, [4.0, 4.0, 2.0, 0.0, 0.0, 0.0]))
    assert result.consensus.tolist() == approx(torch.tensor([0, 0, 0, 0.5, 0.5, 0], dtype=F64))
    assert result.validator_trust.tolist() == pytest.approx([1.0, 1.0, 0.5, 0, 0, 0])
    assert result.ranks[3:5].tolist() == pytest.approx([0.5, 0.4])
    assert result.incentive.tolist() == pytest.approx([0, 0, 0, 5 / 9, 4 / 9, 0])
    assert float(result.trust[3]) == pytest.approx(0.5 / 0.6)
    assert float(result.trust[4]) == pytest.approx(1.0)


def test_unweighted_miner_earns_nothing_and_emission_sums_to_budget() -> None:
    result = yuma_epoch(make_inputs(THREE_VALIDATORS, [4.0, 4.0, 2.0, 0, 0, 0], budget=7.0))
    assert float(result.incentive[5]) == 0.0
    assert float(result.emission[5]) == 0.0
    assert float(result.emission.sum()) == pytest.approx(7.0)
    # both I and D sum to 1, so miners get half: E * I_j / 2
    assert float(result.emission[3]) == pytest.approx(3.5 * 5 / 9)


def test_dividends_favour_validators_that_agree_with_consensus() -> None:
    # equal stakes 1/3. C_3 = C_4 = .5; outlier's W_b row = clipped = (.5, 0).
    # dB col 3: .5/3 each -> 1/3 each; col 4: .5/3, .5/3, 0 -> 1/2, 1/2, 0.
    # ranks: .5, 1/3 -> I = (.6, .4). B = .1*dB:
    # D ~ (1/3*.6 + 1/2*.4, same, 1/3*.6) = (.4, .4, .2) after normalizing.
    inputs = make_inputs(THREE_VALIDATORS, [1.0, 1.0, 1.0, 0, 0, 0])
    result = yuma_epoch(inputs)
    assert result.incentive[3:5].tolist() == pytest.approx([0.6, 0.4])
    assert result.dividends[:3].tolist() == pytest.approx([0.4, 0.4, 0.2])
    assert float(result.bonds[0, 4]) == pytest.approx(0.1 * 0.5)
    for _ in range(4):  # bonds accumulate; the ordering holds epoch after epoch
        inputs = make_inputs(THREE_VALIDATORS, [1.0, 1.0, 1.0, 0, 0, 0], bonds=result.bonds)
        result = yuma_epoch(inputs)
        assert float(result.dividends[0]) == pytest.approx(float(result.dividends[1]))
        assert float(result.dividends[0]) > float(result.dividends[2]) > 0
    # B = (1 - .9^5) * dB after 5 epochs of the same dB
    assert float(result.bonds[0, 4]) == pytest.approx((1 - 0.9**5) * 0.5)


def test_inactive_validator_counts_for_nothing() -> None:
    # validator 2 has most stake and backs only miner 4, but its last update is stale:
    # 50 + 10 < 100. Only validators 0 and 1 count: I = (.5, .5) over miners 3, 4.
    weights = [AGREE, AGREE, [0, 0, 0, 0, 1.0, 0], ZERO, ZERO, ZERO]
    inputs = make_inputs(
        weights, [1.0, 1.0, 50.0, 0, 0, 0], last_update=[100, 100, 50, 100, 100, 100]
    )
    result = yuma_epoch(inputs, YumaParams(activity_cutoff=10))
    assert result.active.tolist() == [True, True, False, True, True, True]
    assert float(result.active_stake[2]) == 0.0
    assert result.incentive[3:5].tolist() == pytest.approx([0.5, 0.5])
    assert float(result.dividends[2]) == 0.0
    assert float(result.emission[2]) == 0.0


def test_rows_without_permit_are_ignored() -> None:
    # two permits: uids 0 and 1 (stake 3, 2); uid 2 (stake 1) pushes miner 4 alone -> ignored
    weights = [[0, 0, 0, 1.0, 0], [0, 0, 0, 1.0, 0], [0, 0, 0, 0, 1.0], [0.0] * 5, [0.0] * 5]
    result = yuma_epoch(make_inputs(weights, [3.0, 2.0, 1.0, 0, 0]),
                        YumaParams(max_allowed_validators=2))
    assert result.validator_permit.tolist() == [True, True, False, False, False]
    assert result.incentive.tolist() == pytest.approx([0, 0, 0, 1.0, 0])
    assert float(result.dividends[2]) == 0.0
    assert float(result.validator_trust[2]) == 0.0


def test_self_weights_are_ignored() -> None:
    # validator 0 gives .9 to itself and .1 to miner 1; after dropping the diagonal and
    # row-normalizing, miner 1 holds the whole row.
    result = yuma_epoch(make_inputs([[0.9, 0.1], [0.0, 0.0]], [1.0, 0.0]))
    assert result.incentive.tolist() == pytest.approx([0.0, 1.0])
    assert result.emission.tolist() == pytest.approx([0.5, 0.5])  # D_0 = 1, I_1 = 1


def test_weights_set_before_a_miner_registered_are_ignored() -> None:
    # row 0 was set at block 10; uid 2 re-registered at block 20 -> its weight meant the
    # previous owner. Remaining weight: miner 1 only.
    inputs = make_inputs(
        [[0, 1.0, 1.0], [0.0] * 3, [0.0] * 3], [1.0, 0, 0],
        registered_at=[0, 0, 20], weights_set_at=[10, 100, 100],
    )
    result = yuma_epoch(inputs)
    assert result.incentive.tolist() == pytest.approx([0.0, 1.0, 0.0])


def test_bonds_to_a_re_registered_uid_are_dropped() -> None:
    prev = torch.zeros(3, 3, dtype=F64)
    prev[0, 2] = 0.8  # bond to the old owner of uid 2
    inputs = make_inputs(
        [[0, 1.0, 1.0], [0.0] * 3, [0.0] * 3], [1.0, 0, 0],
        registered_at=[0, 0, 20], weights_set_at=[10, 100, 100], bonds=prev,
    )
    assert float(yuma_epoch(inputs).bonds[0, 2]) == 0.0


def test_all_zero_weights_give_zero_emission_without_nan() -> None:
    result = yuma_epoch(make_inputs([[0.0] * 3] * 3, [1.0, 2.0, 0.0], budget=5.0))
    for name in ("consensus", "incentive", "dividends", "emission", "trust", "bonds"):
        tensor = getattr(result, name)
        assert torch.isfinite(tensor).all(), name
        assert float(tensor.abs().sum()) == 0.0, name


def test_accepts_u16_weights() -> None:
    raw = torch.tensor([[0, 65535, 0], [0, 0, 0], [0, 0, 0]], dtype=torch.uint16)
    inputs = make_inputs([[0.0] * 3] * 3, [1.0, 0, 0])
    inputs = EpochInputs(**{**inputs.__dict__, "weights": raw})
    assert yuma_epoch(inputs).incentive.tolist() == pytest.approx([0.0, 1.0, 0.0])


def test_empty_subnet() -> None:
    result = yuma_epoch(make_inputs([], []))
    assert result.emission.shape == (0,)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("weights", torch.zeros(2, 3), "weights must have shape"),
        ("bonds", torch.zeros(3), "bonds must have shape"),
        ("last_update", torch.zeros(2), "last_update must have shape"),
        ("weights", -torch.ones(3, 3), "non-negative"),
        ("stake", torch.tensor([1.0, float("nan"), 0.0]), "finite"),
        ("emission_budget", float("inf"), "emission_budget"),
    ],
)
def test_bad_inputs_raise_clear_value_errors(field, value, message) -> None:
    inputs = make_inputs([[0.0] * 3] * 3, [1.0, 0, 0])
    bad = EpochInputs(**{**inputs.__dict__, field: value})
    with pytest.raises(ValueError, match=message):
        yuma_epoch(bad)


def test_bad_params_raise() -> None:
    with pytest.raises(ValueError, match="kappa"):
        YumaParams(kappa=0.0)
    with pytest.raises(ValueError, match="bond_alpha"):
        YumaParams(bond_alpha=1.5)


# ---- properties ------------------------------------------------------------------------


@st.composite
def epochs(draw: st.DrawFn) -> tuple[EpochInputs, YumaParams]:
    n = draw(st.integers(1, 7))
    weights = draw(st.lists(st.lists(st.integers(0, 65535), min_size=n, max_size=n),
                            min_size=n, max_size=n))
    stake = draw(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=n, max_size=n))
    blocks = st.lists(st.integers(0, 200), min_size=n, max_size=n)
    bonds = draw(st.lists(st.floats(0, 1, allow_nan=False), min_size=n * n, max_size=n * n))
    inputs = EpochInputs(
        weights=torch.tensor(weights, dtype=F64), stake=torch.tensor(stake, dtype=F64),
        last_update=torch.tensor(draw(blocks)), registered_at=torch.tensor(draw(blocks)),
        weights_set_at=torch.tensor(draw(blocks)),
        bonds=torch.tensor(bonds, dtype=F64).reshape(n, n),
        current_block=200, emission_budget=draw(st.floats(0, 1e9, allow_nan=False)),
    )
    params = YumaParams(
        kappa=draw(st.floats(0.05, 1.0)), activity_cutoff=draw(st.integers(0, 250)),
        max_allowed_validators=draw(st.integers(0, n)),
    )
    return inputs, params


def _sums_to_zero_or(total: float, target: float) -> bool:
    return total == pytest.approx(0.0, abs=1e-9) or total == pytest.approx(target, rel=1e-9)


@settings(max_examples=150, deadline=None)
@given(epochs())
def test_outputs_are_finite_non_negative_and_normalized(case) -> None:
    inputs, params = case
    result = yuma_epoch(inputs, params)
    for name in ("consensus", "incentive", "dividends", "emission", "trust", "bonds",
                 "ranks", "validator_trust", "active_stake"):
        tensor = getattr(result, name)
        assert torch.isfinite(tensor).all(), name
        assert (tensor >= 0).all(), name
    assert _sums_to_zero_or(float(result.incentive.sum()), 1.0)
    assert _sums_to_zero_or(float(result.dividends.sum()), 1.0)
    assert _sums_to_zero_or(float(result.emission.sum()), inputs.emission_budget)
    assert (result.trust <= 1.0 + 1e-12).all()
