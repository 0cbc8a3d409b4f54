"""The owner / miner / validator split and the epoch payout, against subtensor's coinbase tests."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.emission import EpochInputs, YumaParams, yuma_epoch
from protocol.payout import (
    OWNER_CUT,
    EmissionSplit,
    floor_rao,
    owner_uids,
    pay_epoch,
    split_block_emission,
    split_emission,
)

F64 = torch.float64
ONE = 1_000_000_000


def test_the_owner_takes_18_percent_then_miners_and_validators_halve_the_rest() -> None:
    one = split_block_emission(ONE)
    assert one == EmissionSplit(owner=179_995_422, miners=410_002_288, validators=410_002_288)
    assert abs(OWNER_CUT - 0.18) < 1e-4
    assert split_emission(ONE, blocks=11) == EmissionSplit(11 * 179_995_422, 11 * 410_002_288,
                                                           11 * 410_002_288)
    assert split_emission(ONE, blocks=11).epoch_budget == 22 * 410_002_288


def test_owner_cut_base() -> None:
    # subtensor tests/coinbase.rs test_owner_cut_base: a cut of 0 pends nothing, u16::MAX all
    assert split_block_emission(ONE, owner_cut=0.0).owner == 0
    assert split_block_emission(ONE, owner_cut=65535 / 65535).owner == ONE


def test_disabling_the_owner_cut_leaves_it_to_miners_and_validators() -> None:
    split = split_block_emission(ONE, owner_cut_enabled=False)
    assert split == EmissionSplit(0, ONE // 2, ONE // 2)


def test_bad_split_arguments_raise() -> None:
    with pytest.raises(ValueError):
        split_block_emission(-1)
    with pytest.raises(ValueError):
        split_block_emission(ONE, owner_cut=1.5)
    with pytest.raises(ValueError):
        split_emission(ONE, blocks=-1)


def test_dividend_and_incentive_distribution() -> None:
    # coinbase.rs test_calculate_dividend_and_incentive_distribution: one uid with half the
    # pending alpha as incentive and half as dividend gets it all back (to 2 rao)
    pending = 123_456_789
    split = EmissionSplit(0, pending // 2, pending - pending // 2)
    paid = pay_epoch(torch.tensor([pending / 2]), torch.tensor([pending / 2]), split)
    assert paid.total(0) == pytest.approx(pending, abs=2)
    # ..._all_to_validators: no incentive -> the validators get both parts
    paid = pay_epoch(torch.tensor([0.0]), torch.tensor([float(pending)]), split)
    assert paid.miners == [0] and paid.validators == [pending]


def test_no_miners_all_drained_to_the_validator() -> None:
    # coinbase.rs test_distribute_emission_no_miners_all_drained: one staked uid, no weights
    split = EmissionSplit(0, 500_000, 500_000)
    inputs = EpochInputs(
        weights=torch.zeros(1, 1), stake=torch.tensor([1.0]), last_update=torch.tensor([0]),
        registered_at=torch.tensor([0]), weights_set_at=torch.tensor([0]),
        bonds=torch.zeros(1, 1), current_block=1, emission_budget=split.epoch_budget)
    result = yuma_epoch(inputs)
    paid = pay_epoch(result.server_emission, result.validator_emission, split)
    assert paid.total(0) == pytest.approx(1_000_000, abs=1)


def test_incentive_to_the_owners_hotkeys_is_burned() -> None:
    # coinbase.rs test_incentive_to_subnet_owner(s_hotkey)_is_burned
    burned = owner_uids(["owner-c", "other-c", "owner-c"], ["owner-h", "other-h", "second-h"],
                        owner_coldkey="owner-c", owner_hotkey="owner-h")
    assert burned.tolist() == [True, False, True]
    split = EmissionSplit(0, 30_000_000, 0)
    paid = pay_epoch(torch.tensor([1e7, 1e7, 1e7]), torch.zeros(3), split, burned)
    assert paid.miners == [0, 10_000_000, 0]
    assert paid.burned == 20_000_000


def test_a_full_epoch_pays_what_the_split_holds() -> None:
    # validator 0 (stake 3) and 1 (stake 1) weight miners 2 and 3 equally
    split = split_emission(ONE, blocks=10)
    weights = torch.tensor([[0, 0, 1.0, 1.0], [0, 0, 1.0, 1.0], [0] * 4, [0] * 4], dtype=F64)
    inputs = EpochInputs(
        weights=weights, stake=torch.tensor([3.0, 1.0, 0, 0], dtype=F64),
        last_update=torch.tensor([5] * 4), registered_at=torch.tensor([0] * 4),
        weights_set_at=torch.tensor([5] * 4), bonds=torch.zeros(4, 4), current_block=10,
        emission_budget=split.epoch_budget)
    result = yuma_epoch(inputs, YumaParams())
    paid = pay_epoch(result.server_emission, result.validator_emission, split)
    assert paid.miners[2] == paid.miners[3] == split.miners // 2
    assert paid.validators[:2] == [pytest.approx(split.validators * 3 / 4, abs=2),
                                   pytest.approx(split.validators / 4, abs=2)]
    total = sum(paid.miners) + sum(paid.validators) + split.owner
    assert 10 * ONE - 10 * 3 <= total <= 10 * ONE


def test_floor_rao_absorbs_float_rounding() -> None:
    assert floor_rao(99_999_999.9999999) == 100_000_000
    assert floor_rao(1.5) == 1 and floor_rao(0.0) == 0 and floor_rao(-3.0) == 0


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**12), st.integers(0, 400), st.booleans(),
       st.lists(st.floats(0, 1), min_size=1, max_size=6), st.data())
def test_an_epoch_pays_its_budget_and_no_more(rao, blocks, enabled, incentive, data) -> None:
    split = split_emission(rao, blocks, owner_cut_enabled=enabled)
    emitted = rao * blocks
    assert split.owner + split.epoch_budget <= emitted
    assert emitted - split.owner - split.epoch_budget <= 3 * blocks  # floors only
    n = len(incentive)
    dividends = data.draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))
    # what an epoch hands over: incentive and dividends each sum to 1 (or are all 0)
    i_share = torch.tensor(incentive, dtype=F64)
    d_share = torch.tensor(dividends, dtype=F64)
    i_share = i_share / i_share.sum() if i_share.sum() > 0 else i_share
    d_share = d_share / d_share.sum() if d_share.sum() > 0 else d_share
    total = float(i_share.sum() + d_share.sum())
    if total == 0:
        return
    budget = split.epoch_budget
    burned = torch.tensor(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    paid = pay_epoch(budget * i_share / total, budget * d_share / total, split, burned)
    assert all(x >= 0 for x in paid.miners + paid.validators) and paid.burned >= 0
    assert all(m == 0 for m, b in zip(paid.miners, burned.tolist(), strict=True) if b)
    out = sum(paid.miners) + paid.burned + sum(paid.validators)
    assert budget - 2 * n - 2 <= out <= budget + blocks
