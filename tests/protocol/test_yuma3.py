"""Yuma3 and liquid alpha: subtensor's Yuma3 epoch tests replayed, plus unit checks.

The scenarios (tests/epoch.rs ``test_yuma_3_*``): three validators with stake 8:1:1 or
33:33:34 move their weight between two or three servers; after each epoch the subtensor
test compares dividends (and lists the bonds) against a table, to 1e-3. Setup as there:
bonds penalty 0, bonds moving average 0.975 (alpha 0.025), kappa 0.5, liquid alpha on in
[0.1, 0.3] with steepness 1000, three validator permits, tempo 1.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.emission import YumaParams
from protocol.yuma3 import LiquidAlpha, ema_bonds, liquid_alphas
from tests.protocol.subtensor_mock import MockSubnet

M = 65535
TOL = 1e-3  # the subtensor tests' epsilon
A, B = [M, 0], [0, M]  # all weight on server 1 / on server 2


def scenario(stakes: list[int], liquid: bool = True) -> MockSubnet:
    params = YumaParams(
        kappa=32767 / M, bond_alpha=1 - 975_000 / 1e6, bond_penalty=0.0,
        max_allowed_validators=3, yuma3=True, liquid_alpha=liquid,
        alpha_low=int(0.1 * M) / M, alpha_high=int(0.3 * M) / M, alpha_sigmoid_steepness=1000,
    )
    net = MockSubnet(stakes, params, tempo=1)
    net.next_block()
    net.epoch()  # permits
    return net


def step(net: MockSubnet, rows: list[list[int]] | None, servers: list[int]):
    if rows is not None:
        for uid, row in enumerate(rows):
            net.set_weights(uid, servers, row)
    net.next_block()
    return net.epoch()


def check(net: MockSubnet, result, servers: list[int], bonds: list[list[float]],
          dividends: list[float]) -> None:
    assert result.dividends[:3].tolist() == pytest.approx(dividends, abs=TOL)
    got = [[float(net.bonds_u16[i, j]) / M for j in servers] for i in range(3)]
    for row, want in zip(got, bonds, strict=True):
        assert row == pytest.approx(want, abs=TOL)


KAPPA_MOVES_FIRST = (
    [8, 1, 1, 0, 0],
    [[A] * 3, [B, A, A], [B, B, A], [B] * 3, None, None],
    [[[.1013, 0], [.1013, 0], [.1013, 0]], [[.0908, .1013], [.3697, 0], [.3697, 0]],
     [[.0815, .1924], [.3170, .1013], [.5580, 0]], [[.0731, .2742], [.2765, .1924], [.4306, .1013]],
     [[.0656, .3478], [.2435, .2742], [.3589, .1924]],
     [[.0588, .4139], [.2157, .3478], [.3089, .2742]]],
    [[.8, .1, .1], [1, 0, 0], [.9382, .0618, 0], [.8819, .0773, .0407], [.8564, .0844, .0592],
     [.8418, .0884, .0697]],
)
KAPPA_MOVES_SECOND = (
    [8, 1, 1, 0, 0],
    [[A] * 3, [A, B, A], [B, B, A], [B] * 3, None, None],
    [[[.1013, 0], [.1013, 0], [.1013, 0]], [[.1924, 0], [.0908, .2987], [.1924, 0]],
     [[.1715, .1013], [.0815, .3697], [.4336, 0]], [[.1531, .1924], [.0731, .4336], [.3608, .1013]],
     [[.1369, .2742], [.0656, .4910], [.3103, .1924]],
     [[.1225, .3478], [.0588, .5426], [.2712, .2742]]],
    [[.8, .1, .1], [.8446, .0498, .1056], [.6868, .3132, 0], [.7421, .2090, .0489],
     [.7625, .1706, .0669], [.7730, .1508, .0762]],
)
KAPPA_MOVES_LAST = (
    [8, 1, 1, 0, 0],
    [[A] * 3, [A, B, A], [A, B, B], [B] * 3, None, None],
    [[[.1013, 0], [.1013, 0], [.1013, 0]], [[.1924, 0], [.0908, .2987], [.1924, 0]],
     [[.2742, 0], [.0815, .5081], [.1715, .2987]], [[.2416, .1013], [.0731, .5580], [.1531, .3697]],
     [[.2141, .1924], [.0656, .6028], [.1369, .4336]],
     [[.1903, .2742], [.0588, .6430], [.1225, .4910]]],
    [[.8, .1, .1], [.8446, .0498, .1056], [.8966, .0333, .0701], [.4663, .3210, .2127],
     [.5976, .2340, .1683], [.6592, .1932, .1475]],
)
ONE_EPOCH_SWITCH = (
    [33, 33, 34, 0, 0],
    [[A] * 3, [A] * 3, [A, A, B], [A] * 3, [A] * 3, [A] * 3],
    [[[.1013, 0]] * 3, [[.1924, 0]] * 3, [[.2742, 0], [.2742, 0], [.1715, .2987]],
     [[.3478, 0], [.3478, 0], [.2554, .2618]], [[.4139, 0], [.4139, 0], [.3309, .2312]],
     [[.4733, 0], [.4733, 0], [.3987, .2051]]],
    [[.33, .33, .34], [.33, .33, .34], [.3782, .3782, .2436], [.3628, .3628, .2745],
     [.3541, .3541, .2917], [.3487, .3487, .3026]],
)


@pytest.mark.parametrize(
    "case", [KAPPA_MOVES_FIRST, KAPPA_MOVES_SECOND, KAPPA_MOVES_LAST, ONE_EPOCH_SWITCH],
    ids=["kappa_moves_first", "kappa_moves_second", "kappa_moves_last", "one_epoch_switch"])
def test_yuma_3_scenarios(case) -> None:
    stakes, schedule, bonds, dividends = case
    net = scenario(stakes)
    for rows, want_bonds, want_dividends in zip(schedule, bonds, dividends, strict=True):
        check(net, step(net, rows, [3, 4]), [3, 4], want_bonds, want_dividends)


def test_yuma_3_liquid_alpha_disabled() -> None:
    """Without liquid alpha every bond moves at the fixed rate 0.025."""
    net = scenario([33, 33, 34, 0, 0], liquid=False)
    bonds = [[[.0250, 0]] * 3, [[.0494, 0]] * 3, [[.0731, 0], [.0731, 0], [.0481, .0250]],
             [[.0963, 0], [.0963, 0], [.0719, .0244]], [[.1189, 0], [.1189, 0], [.0951, .0238]],
             [[.1409, 0], [.1409, 0], [.1178, .0232]]]
    dividends = [[.33, .33, .34], [.33, .33, .34], [.3734, .3734, .2532], [.3611, .3611, .2779],
                 [.3541, .3541, .2919], [.3495, .3495, .3009]]
    for epoch, (want_bonds, want_dividends) in enumerate(zip(bonds, dividends, strict=True)):
        rows = [A, A, B] if epoch == 2 else [A] * 3
        check(net, step(net, rows, [3, 4]), [3, 4], want_bonds, want_dividends)


def test_yuma_3_stable_miner() -> None:
    half = M // 2
    one_three, two_three = [half, 0, half], [0, half, half]
    schedule = [[one_three] * 3, [one_three, two_three, one_three],
                [two_three, two_three, one_three], [two_three] * 3, None, None]
    bonds = [[[.0507, 0, .0507]] * 3,
             [[.0962, 0, .0962], [.0455, .1, .0962], [.0962, 0, .0962]],
             [[.0863, .0507, .1371], [.0408, .1405, .1371], [.1770, 0, .1371]],
             [[.0774, .0962, .1739], [.0367, .1770, .1739], [.1579, .0507, .1739]],
             [[.0694, .1371, .2069], [.0329, .2097, .2069], [.1411, .0962, .2069]],
             [[.0623, .1739, .2366], [.0296, .2391, .2366], [.1263, .1371, .2366]]]
    dividends = [[.8, .1, .1], [.8226, .0745, .1028], [.7750, .1685, .0565],
                 [.7864, .1372, .0764], [.7912, .1241, .0847], [.7937, .1173, .0890]]
    net = scenario([8, 1, 1, 0, 0, 0])
    for rows, want_bonds, want_dividends in zip(schedule, bonds, dividends, strict=True):
        check(net, step(net, rows, [3, 4, 5]), [3, 4, 5], want_bonds, want_dividends)


def test_yuma_3_bonds_reset() -> None:
    """A bonds reset (commitment with the reset flag) for server 1 at epoch 20."""
    targets = {
        0: ([[.1013, 0]] * 3, [.8, .1, .1]),
        1: ([[.1924, 0], [.0908, .2987], [.0908, .2987]], [.8944, .0528, .0528]),
        2: ([[.1715, .1013], [.0815, .3697], [.0815, .3697]], [.5230, .2385, .2385]),
        19: ([[.0269, .8539], [.0131, .8975], [.0131, .8975]], [.7919, .1040, .1040]),
        20: ([[0, .8687], [0, .9079], [0, .9079]], [.7928, .1036, .1036]),
        21: ([[0, .8820], [.2987, .6386], [.2987, .6386]], [.8467, .0766, .0766]),
        40: ([[.8687, .0578], [.9079, .0523], [.9079, .0523]], [.7928, .1036, .1036]),
    }
    net = scenario([8, 1, 1, 0, 0])
    for epoch in range(41):
        rows = ([A] * 3 if epoch == 0 else [A, B, B] if epoch == 1 else
                [B] * 3 if epoch <= 20 else [B, A, A] if epoch == 21 else [A] * 3)
        for uid, row in enumerate(rows):
            net.set_weights(uid, [3, 4], row)
        if epoch == 20:
            net.reset_bonds_to(3)
        result = step(net, None, [3, 4])
        if epoch in targets:
            check(net, result, [3, 4], *targets[epoch])


def test_liquid_alpha_equal_values_against_itself() -> None:
    """Liquid alpha with alpha_low == alpha_high is the fixed-rate EMA."""
    weights = torch.tensor([0., .1, 0., 0., .2, .4, 0., .3, .1, 0., .4, .5],
                           dtype=torch.float64).reshape(4, 3)
    bonds = torch.tensor([.1, .1, .5, 0., 0., .4, .5, .1, .1, 0., .4, .2],
                         dtype=torch.float64).reshape(4, 3)
    consensus = torch.tensor([.3, .2, .1], dtype=torch.float64)
    rate = (M // 10) / M
    liquid = ema_bonds(weights, torch.ones(4, 3, dtype=torch.bool), bonds, consensus, 0.1,
                       LiquidAlpha(rate, rate, 1000))
    fixed = ema_bonds(weights, torch.ones(4, 3, dtype=torch.bool), bonds, consensus, 0.1, None)
    assert torch.allclose(liquid, fixed, atol=TOL)


def test_liquid_alpha_rates_follow_the_gap() -> None:
    liquid = LiquidAlpha(0.1, 0.3, 1000)
    consensus = torch.tensor([0.2, 0.2, 0.2], dtype=torch.float64)
    # buying ahead of consensus by .8, on consensus, selling a bond .8 above the weight
    weights = torch.tensor([[1.0, 0.2, 0.1]], dtype=torch.float64)
    bonds = torch.tensor([[0.0, 0.2, 0.9]], dtype=torch.float64)
    rates = liquid_alphas(consensus, weights, bonds, liquid)[0].tolist()
    sigmoid = [1 / (1 + torch.exp(torch.tensor(-10 * (g - 0.5))).item()) for g in (.8, 0, .8)]
    assert rates == pytest.approx([0.1 + 0.2 * s for s in sigmoid])
    assert rates[0] > 0.29 and rates[1] < 0.102
    # no consensus at all: liquid alpha is not used, the fixed rate is
    zero = ema_bonds(weights, weights > 0, bonds, torch.zeros(3, dtype=torch.float64), 0.5, liquid)
    assert zero[0].tolist() == pytest.approx([0.5, 0.2, 0.5])


def test_liquid_alpha_keeps_only_bonds_with_a_weight_entry() -> None:
    # the chain's sparse epoch drops a bond whose validator holds no weight entry for that
    # miner; a zero entry keeps it (decaying)
    liquid = LiquidAlpha(0.1, 0.3, 1000)
    weights = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    bonds = torch.tensor([[0.5, 0.0]], dtype=torch.float64)
    consensus = torch.tensor([0.0, 1.0], dtype=torch.float64)
    without = ema_bonds(weights, torch.tensor([[False, True]]), bonds, consensus, 0.1, liquid)
    with_zero = ema_bonds(weights, torch.tensor([[True, True]]), bonds, consensus, 0.1, liquid)
    assert float(without[0, 0]) == 0.0
    assert 0.0 < float(with_zero[0, 0]) < 0.5


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 5), st.data())
def test_yuma3_bonds_stay_proportions(n, data) -> None:
    values = st.floats(0.0, 1.0, allow_nan=False)
    matrix = st.lists(values, min_size=n * n, max_size=n * n)
    weights = torch.tensor(data.draw(matrix), dtype=torch.float64).reshape(n, n)
    bonds = torch.tensor(data.draw(matrix), dtype=torch.float64).reshape(n, n)
    consensus = torch.tensor(data.draw(st.lists(values, min_size=n, max_size=n)),
                             dtype=torch.float64)
    low = data.draw(st.floats(0.0, 1.0))
    liquid = LiquidAlpha(low, data.draw(st.floats(low, 1.0)), data.draw(st.floats(0, 5000)))
    out = ema_bonds(weights, weights > 0, bonds, consensus, data.draw(values), liquid)
    assert torch.isfinite(out).all() and (out >= 0).all() and (out <= 1 + 1e-12).all()
    rates = liquid_alphas(consensus, weights, bonds, liquid)
    assert (rates >= liquid.low - 1e-12).all() and (rates <= liquid.high + 1e-12).all()
