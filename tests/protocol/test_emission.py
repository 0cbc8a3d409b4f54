"""Yuma consensus: hand-worked tables and properties. All fast (a few seconds).

subtensor's own epoch tests, replayed through the same function, are in
test_emission_subtensor.py (classic Yuma) and test_yuma3.py (Yuma3 and liquid alpha).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from protocol.emission import (
    EpochInputs,
    YumaParams,
    filtered_stake,
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
    **extra,
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
        **extra,
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


# ---- building blocks ---------------------------------------------------------------


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


def test_permits_top_k_by_stake_ties_to_the_higher_uid_and_no_zero_stake() -> None:
    stake = torch.tensor([1.0, 5.0, 5.0, 0.0, 2.0], dtype=F64)
    assert validator_permits(stake, 2).tolist() == [False, True, True, False, False]
    assert validator_permits(stake, 10).tolist() == [True, True, True, False, True]
    assert validator_permits(stake, 5).tolist() == [True, True, True, False, True]
    # a tie at the cut: uid 2 wins over uid 1 (subtensor keeps the higher uid)
    assert validator_permits(stake, 1).tolist() == [False, False, True, False, False]
    assert validator_permits(stake, 0).tolist() == [False] * 5


def test_stake_below_the_threshold_counts_zero_except_the_owner() -> None:
    stake = torch.tensor([5.0, 1.0, 4.0], dtype=F64)
    assert filtered_stake(stake, 2.0).tolist() == pytest.approx([5 / 9, 0.0, 4 / 9])
    assert filtered_stake(stake, 2.0, owner_uid=1).tolist() == pytest.approx([0.5, 0.1, 0.4])
    # a uid under the threshold holds no permit and its weights do not count
    result = yuma_epoch(make_inputs([[0, 0, 1.0], [0, 0, 0], [0, 0, 0]], [0.5, 0, 0]),
                        YumaParams(stake_threshold=1.0))
    assert result.validator_permit.tolist() == [False, False, False]
    assert float(result.incentive.sum()) == 0.0


# ---- the epoch ---------------------------------------------------------------------


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
    assert result.server_emission.tolist() == pytest.approx((3.5 * result.incentive).tolist())
    assert result.validator_emission.tolist() == pytest.approx((3.5 * result.dividends).tolist())


def test_dividends_favour_validators_that_agree_with_consensus() -> None:
    # equal stakes 1/3. C_3 = C_4 = .5; the outlier's bond weights = clipped = (.5, 0).
    # dB col 3: .5/3 each -> 1/3 each; col 4: .5/3, .5/3, 0 -> 1/2, 1/2, 0; no bonds before,
    # so B = colnorm(.1 * dB) = dB. ranks: .5, 1/3 -> I = (.6, .4).
    # D ~ (1/3*.6 + 1/2*.4, same, 1/3*.6) = (.4, .4, .2) after normalizing.
    inputs = make_inputs(THREE_VALIDATORS, [1.0, 1.0, 1.0, 0, 0, 0])
    result = yuma_epoch(inputs)
    assert result.incentive[3:5].tolist() == pytest.approx([0.6, 0.4])
    assert result.dividends[:3].tolist() == pytest.approx([0.4, 0.4, 0.2])
    # stored column max-upscaled: col 3 all 1, col 4 (1, 1, 0)
    assert result.bonds[:3, 3:5].flatten().tolist() == pytest.approx([1, 1, 1, 1, 1, 0])
    for _ in range(4):  # the same weights again: bonds and dividends hold
        inputs = make_inputs(THREE_VALIDATORS, [1.0, 1.0, 1.0, 0, 0, 0], bonds=result.bonds,
                             validator_permit=result.validator_permit)
        result = yuma_epoch(inputs)
        assert result.dividends[:3].tolist() == pytest.approx([0.4, 0.4, 0.2])


def test_previous_bonds_and_the_new_term_are_both_column_normalized() -> None:
    # validator 0 alone bonded to miner 2 last epoch (stored max-upscaled: 1.0); now validators
    # 0 and 1 (equal stake) both weight miner 2. colnorm(prev) = (1, 0);
    # colnorm(dB) = (.5, .5); B = colnorm(.1 * (.5, .5) + .9 * (1, 0)) = (.95, .05).
    prev = torch.zeros(3, 3, dtype=F64)
    prev[0, 2] = 1.0
    weights = [[0, 0, 1.0], [0, 0, 1.0], [0, 0, 0]]
    result = yuma_epoch(make_inputs(weights, [1.0, 1.0, 0], bonds=prev))
    assert result.dividends[:2].tolist() == pytest.approx([0.95, 0.05])
    assert result.bonds[:2, 2].tolist() == pytest.approx([1.0, 0.05 / 0.95])  # upscaled
    # the scale of stored bonds does not matter: 7x the same bonds give the same epoch
    again = yuma_epoch(make_inputs(weights, [1.0, 1.0, 0], bonds=7 * prev))
    assert again.dividends.tolist() == pytest.approx(result.dividends.tolist())


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


def test_this_epoch_masks_with_the_permits_the_previous_epoch_stored() -> None:
    # uid 2 now has the most stake but held no permit last epoch: its row does not count yet,
    # and it is paid nothing; it gets a permit for the next epoch.
    weights = [[0, 0, 0, 1.0], [0] * 4, [0, 0, 0, 0], [0] * 4]
    weights[2] = [0, 1.0, 0, 0]
    inputs = make_inputs(weights, [1.0, 0, 9.0, 0],
                         validator_permit=torch.tensor([True, False, False, False]))
    result = yuma_epoch(inputs, YumaParams(max_allowed_validators=1))
    assert result.incentive.tolist() == pytest.approx([0, 0, 0, 1.0])
    assert result.validator_permit.tolist() == [False, False, True, False]
    assert float(result.dividends[0]) == pytest.approx(1.0)
    assert result.bonds[0].tolist() == [0.0] * 4  # uid 0 lost its permit: its row is cleared


def test_self_weights_are_ignored_except_the_owners() -> None:
    # validator 0 gives .9 to itself and .1 to miner 1; after dropping the diagonal and
    # row-normalizing, miner 1 holds the whole row.
    result = yuma_epoch(make_inputs([[0.9, 0.1], [0.0, 0.0]], [1.0, 0.0]))
    assert result.incentive.tolist() == pytest.approx([0.0, 1.0])
    assert result.emission.tolist() == pytest.approx([0.5, 0.5])  # D_0 = 1, I_1 = 1
    # the subnet owner's uid keeps its self-weight (and always holds a permit)
    owned = yuma_epoch(make_inputs([[0.9, 0.1], [0.0, 0.0]], [1.0, 0.0], owner_uid=0))
    assert owned.incentive.tolist() == pytest.approx([0.9, 0.1])
    no_stake = yuma_epoch(make_inputs([[0, 0], [1.0, 0]], [0.0, 0.0], owner_uid=1))
    assert no_stake.validator_permit.tolist() == [False, True]


def test_weights_set_before_or_in_the_block_a_miner_registered_are_ignored() -> None:
    # row 0 was set at block 10; uid 2 re-registered at block 20 -> its weight meant the
    # previous owner. Remaining weight: miner 1 only.
    weights = [[0, 1.0, 1.0], [0.0] * 3, [0.0] * 3]
    inputs = make_inputs(weights, [1.0, 0, 0], registered_at=[0, 0, 20],
                         weights_set_at=[10, 100, 100])
    assert yuma_epoch(inputs).incentive.tolist() == pytest.approx([0.0, 1.0, 0.0])
    # set in the very block uid 2 registered: the chain cannot tell the order -> dropped too
    same_block = make_inputs(weights, [1.0, 0, 0], registered_at=[0, 0, 20],
                             weights_set_at=[20, 100, 100])
    assert yuma_epoch(same_block).incentive.tolist() == pytest.approx([0.0, 1.0, 0.0])
    after = make_inputs(weights, [1.0, 0, 0], registered_at=[0, 0, 20],
                        weights_set_at=[21, 100, 100])
    assert yuma_epoch(after).incentive.tolist() == pytest.approx([0.0, 0.5, 0.5])


def test_bonds_to_a_uid_registered_since_the_last_epoch_are_dropped_whole() -> None:
    # last epoch validator 0 alone was bonded to miner 3 and to miner 2's previous owner;
    # uid 2 re-registered at block 20; now validators 0 and 1 (equal stake) weight both.
    prev = torch.zeros(4, 4, dtype=F64)
    prev[0, 2] = prev[0, 3] = 0.8
    weights = [[0, 0, 1.0, 1.0], [0, 0, 1.0, 1.0], [0.0] * 4, [0.0] * 4]

    def run(last_epoch_block: int | None, registered: int = 20):
        inputs = make_inputs(weights, [1.0, 1.0, 0, 0], registered_at=[0, 0, registered, 0],
                             block=30, weights_set_at=[30, 30, 30, 30], bonds=prev,
                             last_epoch_block=last_epoch_block)
        return yuma_epoch(inputs, YumaParams(bond_alpha=0.5))

    # registered after the last epoch (19): the whole column goes, so both start equal;
    # kept: colnorm(prev) = (1, 0), B = colnorm(.5 * (.5, .5) + .5 * (1, 0)) = (.75, .25)
    assert run(19).bonds[:2, 2].tolist() == pytest.approx([1.0, 1.0])
    assert run(20).bonds[:2, 2].tolist() == pytest.approx([1.0, 1 / 3])
    for last in (19, 20):  # other columns are untouched
        assert run(last).bonds[:2, 3].tolist() == pytest.approx([1.0, 1 / 3])
    # by default the previous epoch is the block before: only this block's registrations
    # lose their column (and their weights, set in the same block, are dropped too)
    assert run(None, registered=30).bonds[:2, 2].tolist() == [0.0, 0.0]
    assert run(None, registered=29).bonds[:2, 2].tolist() == pytest.approx([1.0, 1 / 3])


def test_no_incentive_pays_validators_by_active_stake() -> None:
    # all weights are self-weights: nobody earns incentive; validators share the budget by
    # active stake (uid 1 is inactive), miners get nothing
    weights = [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]
    inputs = make_inputs(weights, [3.0, 5.0, 1.0], budget=10.0, last_update=[100, 1, 100])
    result = yuma_epoch(inputs, YumaParams(activity_cutoff=10))
    assert float(result.incentive.sum()) == 0.0 and float(result.dividends.sum()) == 0.0
    assert result.server_emission.tolist() == [0.0, 0.0, 0.0]
    assert result.validator_emission.tolist() == pytest.approx([7.5, 0.0, 2.5])
    assert result.emission.tolist() == pytest.approx([7.5, 0.0, 2.5])
    # nobody active: by (threshold-filtered) stake instead
    stale = make_inputs(weights, [3.0, 5.0, 2.0], budget=10.0, last_update=[1, 1, 1])
    assert yuma_epoch(stale, YumaParams(activity_cutoff=10)).emission.tolist() == \
        pytest.approx([3.0, 5.0, 2.0])
    for name in ("consensus", "incentive", "dividends", "trust", "bonds"):
        tensor = getattr(result, name)
        assert torch.isfinite(tensor).all(), name


def test_accepts_u16_weights() -> None:
    raw = torch.tensor([[0, 65535, 0], [0, 0, 0], [0, 0, 0]], dtype=torch.uint16)
    inputs = make_inputs([[0.0] * 3] * 3, [1.0, 0, 0])
    inputs = EpochInputs(**{**inputs.__dict__, "weights": raw})
    assert yuma_epoch(inputs).incentive.tolist() == pytest.approx([0.0, 1.0, 0.0])


def test_empty_subnet() -> None:
    for params in (YumaParams(), YumaParams(yuma3=True, liquid_alpha=True)):
        result = yuma_epoch(make_inputs([], []), params)
        assert result.emission.shape == (0,) and result.bonds.shape == (0, 0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("weights", torch.zeros(2, 3), "weights must have shape"),
        ("bonds", torch.zeros(3), "bonds must have shape"),
        ("last_update", torch.zeros(2), "last_update must have shape"),
        ("validator_permit", torch.zeros(2, dtype=torch.bool), "validator_permit must have"),
        ("weight_entries", torch.zeros(3, 2, dtype=torch.bool), "weight_entries must have"),
        ("weights", -torch.ones(3, 3), "non-negative"),
        ("stake", torch.tensor([1.0, float("nan"), 0.0]), "finite"),
        ("emission_budget", float("inf"), "emission_budget"),
        ("owner_uid", 3, "owner_uid"),
    ],
)
def test_bad_inputs_raise_clear_value_errors(field, value, message) -> None:
    inputs = make_inputs([[0.0] * 3] * 3, [1.0, 0, 0])
    bad = EpochInputs(**{**inputs.__dict__, field: value})
    with pytest.raises(ValueError, match=message):
        yuma_epoch(bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"kappa": 0.0}, "kappa"), ({"bond_alpha": 1.5}, "bond_alpha"),
     ({"alpha_low": 0.9, "alpha_high": 0.5}, "alpha_low"), ({"alpha_high": 2.0}, "alpha_high"),
     ({"stake_threshold": -1.0}, "stake_threshold"),
     ({"alpha_sigmoid_steepness": float("nan")}, "steepness")],
)
def test_bad_params_raise(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        YumaParams(**kwargs)


# ---- properties ----------------------------------------------------------------------


@st.composite
def epochs(draw: st.DrawFn, distinct_stake: bool = False) -> tuple[EpochInputs, YumaParams]:
    n = draw(st.integers(1, 7))
    weights = draw(st.lists(st.lists(st.integers(0, 65535), min_size=n, max_size=n),
                            min_size=n, max_size=n))
    stakes = st.lists(st.floats(0, 1e6, allow_nan=False), min_size=n, max_size=n,
                      unique=distinct_stake)
    blocks = st.lists(st.integers(0, 200), min_size=n, max_size=n)
    bonds = draw(st.lists(st.floats(0, 1, allow_nan=False), min_size=n * n, max_size=n * n))
    inputs = EpochInputs(
        weights=torch.tensor(weights, dtype=F64), stake=torch.tensor(draw(stakes), dtype=F64),
        last_update=torch.tensor(draw(blocks)), registered_at=torch.tensor(draw(blocks)),
        weights_set_at=torch.tensor(draw(blocks)),
        bonds=torch.tensor(bonds, dtype=F64).reshape(n, n),
        current_block=200, emission_budget=draw(st.floats(0, 1e9, allow_nan=False)),
        validator_permit=torch.tensor(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
        last_epoch_block=draw(st.integers(0, 200)),
        owner_uid=draw(st.none() | st.integers(0, n - 1)),
    )
    params = YumaParams(
        kappa=draw(st.floats(0.05, 1.0)), activity_cutoff=draw(st.integers(0, 250)),
        max_allowed_validators=draw(st.integers(0, n)),
        bond_penalty=draw(st.sampled_from([0.0, 0.5, 1.0])),
        yuma3=draw(st.booleans()), liquid_alpha=draw(st.booleans()),
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
                 "ranks", "validator_trust", "active_stake", "server_emission",
                 "validator_emission"):
        tensor = getattr(result, name)
        assert torch.isfinite(tensor).all(), name
        assert (tensor >= 0).all(), name
    assert _sums_to_zero_or(float(result.incentive.sum()), 1.0)
    assert _sums_to_zero_or(float(result.dividends.sum()), 1.0)
    assert (result.trust <= 1.0 + 1e-12).all()
    assert (result.bonds <= 1.0 + 1e-12).all()  # stored bonds are proportions / upscaled
    assert torch.allclose(result.emission, result.server_emission + result.validator_emission)


@settings(max_examples=150, deadline=None)
@given(epochs())
def test_emission_sums_to_the_budget_whenever_anyone_holds_stake(case) -> None:
    inputs, params = case
    result = yuma_epoch(inputs, params)
    budget = float(inputs.emission_budget)
    if float(inputs.stake.sum()) > 0:
        assert float(result.emission.sum()) == pytest.approx(budget, rel=1e-9, abs=1e-6)
    else:
        assert float(result.emission.sum()) == 0.0


@settings(max_examples=100, deadline=None)
@given(epochs(distinct_stake=True), st.randoms(use_true_random=False))
def test_relabelling_uids_relabels_the_outputs(case, rng) -> None:
    inputs, params = case
    n = inputs.stake.shape[0]
    perm = list(range(n))
    rng.shuffle(perm)
    p = torch.tensor(perm)
    owner = None if inputs.owner_uid is None else perm.index(inputs.owner_uid)
    moved = EpochInputs(
        weights=inputs.weights[p][:, p], stake=inputs.stake[p],
        last_update=inputs.last_update[p], registered_at=inputs.registered_at[p],
        weights_set_at=inputs.weights_set_at[p], bonds=inputs.bonds[p][:, p],
        current_block=inputs.current_block, emission_budget=inputs.emission_budget,
        validator_permit=inputs.validator_permit[p], last_epoch_block=inputs.last_epoch_block,
        owner_uid=owner,
    )
    a, b = yuma_epoch(inputs, params), yuma_epoch(moved, params)
    for name in ("incentive", "dividends", "emission", "consensus", "validator_permit"):
        before, after = getattr(a, name)[p], getattr(b, name)
        assert torch.allclose(before.to(F64), after.to(F64), atol=1e-9), name
    assert torch.allclose(a.bonds[p][:, p], b.bonds, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(epochs(), st.data())
def test_a_uid_nobody_weights_earns_no_incentive(case, data) -> None:
    inputs, params = case
    n = inputs.stake.shape[0]
    target = data.draw(st.integers(0, n - 1))
    weights = inputs.weights.clone()
    weights[:, target] = 0.0  # nobody, the owner's self-weight included
    result = yuma_epoch(EpochInputs(**{**inputs.__dict__, "weights": weights}), params)
    assert float(result.incentive[target]) == 0.0
    assert float(result.server_emission[target]) == 0.0


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.data())
def test_a_favourite_of_minority_stake_earns_nothing_at_kappa_half(majority, minority, data):
    # validators 0..a-1 (the majority of stake) weight only miners M1, M2; validators
    # a..a+b-1 (the minority) put any weight they like, mostly on miner F.
    a, b = majority, minority
    n = a + b + 3
    f, m1, m2 = a + b, a + b + 1, a + b + 2
    big = data.draw(st.lists(st.floats(1.0, 100.0), min_size=a, max_size=a))
    small_total = data.draw(st.floats(0.0, 0.98)) * sum(big)  # strictly under half the stake
    small = [small_total / b] * b
    weights = torch.zeros(n, n, dtype=F64)
    for i in range(a):
        weights[i, m1] = data.draw(st.integers(0, 65535))
        weights[i, m2] = data.draw(st.integers(1, 65535))
    for i in range(a, a + b):
        weights[i, f] = data.draw(st.integers(1, 65535))
        weights[i, m1] = data.draw(st.integers(0, 65535))
    stake = big + small + [0.0, 0.0, 0.0]
    inputs = make_inputs(weights.tolist(), stake)
    assume(float(inputs.stake[:a].sum()) > float(inputs.stake[a:].sum()))
    result = yuma_epoch(inputs, YumaParams(kappa=0.5, max_allowed_validators=n))
    assert float(result.incentive[f]) == 0.0
    assert float(result.incentive[m2]) > 0.0
