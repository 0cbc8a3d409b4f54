"""subtensor's own epoch tests (pallets/subtensor/src/tests/epoch.rs), replayed.

Each test builds the state its subtensor namesake builds (stake, registrations, weight
calls, blocks between epochs) in :class:`MockSubnet` and asserts the values the subtensor
test asserts. The chain computes in I32F32 fixed point and stores bonds and scores as
floored u16, float64 here: u16 values may differ by one step (BOND_TOL), rao amounts by a
few parts in 1e9 of the budget (RAO_TOL).
"""

from __future__ import annotations

import pytest
import torch

from protocol.emission import YumaParams
from tests.protocol.subtensor_mock import MockSubnet, u16_floor

M = 65535
KAPPA = 32767 / M  # the chain's default kappa
BOND_TOL = 1  # u16 steps
RAO_TOL = 3  # rao per 1e9


@pytest.fixture(autouse=True)
def one_thread():
    """The 512-uid graphs run 10x faster on one thread than on two busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def params(**kw) -> YumaParams:
    return YumaParams(**{"kappa": KAPPA, "bond_alpha": 0.1, "bond_penalty": 1.0, **kw})


def u16(x: torch.Tensor) -> list[int]:
    return [u16_floor(float(v)) for v in x]


def assert_rao(got: torch.Tensor, expected: list[int], tol: int = RAO_TOL) -> None:
    assert [float(x) for x in got] == pytest.approx(expected, abs=tol)


def test_1_graph() -> None:
    net = MockSubnet([1e9], params(max_allowed_validators=64), tempo=65534)
    net.next_block()
    net.set_weights(0, [0], [M])
    result = net.epoch()
    for name in ("ranks", "trust", "consensus", "incentive", "dividends"):
        assert u16(getattr(result, name)) == [0], name


def test_10_graph() -> None:
    # ten uids with stake 1 and self-weights only: nobody earns, all paid by stake
    net = MockSubnet([1.0] * 10, params(), tempo=65534)
    net.next_block()
    for uid in range(10):
        net.set_weights(uid, [uid], [M])
    result = net.epoch()
    assert u16(result.incentive) == [0] * 10 and u16(result.dividends) == [0] * 10
    assert u16(result.consensus) == [0] * 10
    assert_rao(result.emission, [99_999_999] * 10)


@pytest.mark.parametrize("server_self", [False, True])
@pytest.mark.parametrize("interleave", [0, 1])
def test_512_graph(interleave: int, server_self: bool) -> None:
    n, nv = 512, 64
    validators = list(range(nv)) if interleave == 0 else list(range(0, n, n // nv))
    servers = [u for u in range(n) if u not in validators]
    stake = [328_125_000_000_000.0 if u in validators else 0.0 for u in range(n)]
    net = MockSubnet(stake, params(max_allowed_validators=nv), tempo=65534)
    net.epoch()  # permits
    net.next_block()
    for uid in validators:
        net.set_weights(uid, servers, [M // n] * len(servers))
    if server_self:
        for uid in servers:
            net.set_weights(uid, [uid], [M])
    for _ in range(3):
        result = net.epoch()
    v, s = validators[0], servers[0]
    for uid in validators:
        assert u16_floor(float(result.consensus[uid])) == 0
        assert u16_floor(float(result.incentive[uid])) == 0
        assert u16_floor(float(result.dividends[uid])) == 1023  # floor(1 / 64 * 65535)
        assert float(result.emission[uid]) == pytest.approx(7_812_500, abs=RAO_TOL)
        assert net.bond(uid, v) == 0 and net.bond(uid, s) == M
    for uid in servers:
        assert u16_floor(float(result.consensus[uid])) == 146
        assert u16_floor(float(result.incentive[uid])) == 146  # floor(65535 / 448)
        assert u16_floor(float(result.dividends[uid])) == 0
        assert float(result.emission[uid]) == pytest.approx(1_116_071, abs=RAO_TOL)
        assert net.bond(uid, v) == 0 and net.bond(uid, s) == 0


def test_bonds() -> None:
    """Bond EMA over eight epochs as validators drop out one by one (classic Yuma)."""
    net = MockSubnet([1, 2, 3, 4, 0, 0, 0, 0], params(max_allowed_validators=8), tempo=1)
    net.epoch()  # permits
    net.next_block()
    for uid in range(4):
        net.set_weights(uid, [4, 5, 6, 7], [M // 4, M // 2, (M // 4) * 3, M])
    expected = [
        (None, 4, [16383, 32767, 49151, 65535]),
        ((0, [0]), 4, [14582, 32767, 49151, 65535]),  # val 0: self-weight only
        ((1, [1]), 4, [12603, 28321, 49151, 65535]),  # val 1: self-weight only
        ((2, [2]), 7, [12602, 28320, 49150, 65535]),  # val 2 too: no consensus left
        ((2, [7]), 7, [10951, 24609, 49150, 65535]),  # val 2 -> server 4 only
        (None, 7, [9559, 21482, 49150, 65535]),
        (None, 7, [8376, 18824, 49150, 65535]),
    ]
    for step, (change, column, bonds) in enumerate(expected):
        if change is not None:
            uid, dests = change
            net.set_weights(uid, dests, [M])
        if step:
            net.next_block()
        result = net.epoch()
        got = [net.bond(i, column) for i in range(4)]
        assert got == pytest.approx(bonds, abs=BOND_TOL), step
        if step == 3:  # no consensus: validators are paid by stake
            assert_rao(result.emission, [99_999_999, 199_999_999, 299_999_999, 399_999_999,
                                         0, 0, 0, 0])


def test_active_stake() -> None:
    """Validators whose last update is older than the activity cutoff count for nothing."""
    net = MockSubnet([1.0] * 4, params(max_allowed_validators=4), tempo=1)
    net.epoch()
    net.next_block()
    for uid in (0, 1):
        net.set_weights(uid, [2, 3], [M // 2] * 2)
    result = net.epoch()
    assert u16(result.dividends[:2]) == [32767, 32767]
    assert_rao(result.emission, [250_000_000] * 4)
    assert [net.bond(i, j) for i in (0, 1) for j in range(4)] == [0, 0, M, M] * 2

    net.block = 5002  # past the activity cutoff of validator 1 (last update 1)
    net.set_weights(0, [2, 3], [M // 2] * 2)
    result = net.epoch()
    assert u16_floor(float(result.dividends[0])) == 36044  # (.5 * .9 + .1)
    assert u16_floor(float(result.dividends[1])) == 29490  # .5 * .9
    assert_rao(result.emission[:2], [274_999_999, 224_999_999])
    assert [net.bond(0, 2), net.bond(0, 3)] == [M, M]
    assert [net.bond(1, 2), net.bond(1, 3)] == pytest.approx([53619] * 2, abs=BOND_TOL)

    net.set_weights(1, [2, 3], [M // 2] * 2)
    net.block = 5003
    result = net.epoch()
    assert u16_floor(float(result.dividends[0])) == pytest.approx(35716, abs=BOND_TOL)
    assert u16_floor(float(result.dividends[1])) == pytest.approx(29818, abs=BOND_TOL)
    assert_rao(result.emission[:2], [272_501_132, 227_498_866], tol=30)
    assert [net.bond(0, 2), net.bond(0, 3)] == [M, M]
    assert [net.bond(1, 2), net.bond(1, 3)] == pytest.approx([54712] * 2, abs=BOND_TOL)


def test_outdated_weights() -> None:
    """A re-registered uid: weights set before it registered no longer count."""
    net = MockSubnet([1.0] * 4, params(max_allowed_validators=4), tempo=0)
    net.epoch()
    net.next_block()
    for uid in (0, 1):
        net.set_weights(uid, [2, 3], [2 * (M // 3), M // 3])
    for uid in (2, 3):
        net.set_weights(uid, [uid], [M])
    result = net.epoch()
    assert_rao(result.emission, [250_000_000, 250_000_000, 333_331_637, 166_668_361], tol=5)

    net.register(3)  # a new key over uid 3 (no stake), in the same block
    net.next_block()
    net.set_weights(0, [2, 3], [2 * (M // 3), M // 3])
    result = net.epoch()
    assert u16_floor(float(result.dividends[0])) == 32767
    assert float(result.emission[0]) == pytest.approx(250_000_000, abs=RAO_TOL)
    assert net.bond(0, 2) == M and net.bond(0, 3) == M


def test_zero_weights() -> None:
    """No weights, self-weights only, weights outdated in the same block: validators are
    paid by stake; fresh weights split the emission half and half."""
    net = MockSubnet([1.0, 0.0], params(max_allowed_validators=64), tempo=65534)
    assert_rao(net.epoch().emission, [1e9, 0])
    net.next_block()
    net.set_weights(1, [1], [M])
    assert_rao(net.epoch().emission, [1e9, 0])
    net.next_block()
    net.set_weights(0, [1], [M])
    net.register(1)  # uid 1 replaced in the block the validator set its weights
    assert_rao(net.epoch().emission, [1e9, 0])
    net.next_block()
    net.set_weights(0, [1], [M])
    assert_rao(net.epoch().emission, [5e8, 5e8])


def test_deregistered_miner_bonds() -> None:
    """Bonds to a miner that re-registered after the last epoch restart from zero."""
    net = MockSubnet([1.0] * 4, params(max_allowed_validators=4), tempo=65534)
    net.epoch()
    net.next_block()
    for uid in (0, 1):
        net.set_weights(uid, [2, 3], [2 * (M // 3), M // 3])
    net.next_block(2)
    net.tempo = 2
    net.epoch()
    before = net.bond(0, 2), net.bond(0, 3)
    assert min(before) > 0
    net.tempo = 65534
    net.next_block()
    net.register(3)
    for uid in (0, 1):
        net.set_weights(uid, [2, 3], [2 * (M // 3), M // 3])
    net.next_block()
    net.tempo = 2
    net.epoch()
    assert net.bond(0, 2) >= before[0]
    assert net.bond(0, 3) <= before[1]


@pytest.mark.parametrize("assignment", [0, 1])
@pytest.mark.parametrize(("n", "nv"), [(2, 1), (4, 2), (8, 4)])
@pytest.mark.parametrize("interleave", [0, 1])
def test_validator_permits(interleave: int, n: int, nv: int, assignment: int) -> None:
    """Permits go to the top stake over the stake threshold, and move with the stake."""
    validators = list(range(nv)) if interleave == 0 else list(range(0, n, n // nv))
    servers = [u for u in range(n) if u not in validators]
    stake = [float(u + n if assignment else 1) if u in validators else
             float(u if assignment else 0) for u in range(n)]
    net = MockSubnet(stake, params(max_allowed_validators=nv, stake_threshold=nv),
                     tempo=65534)
    net.epoch()
    for v in validators:
        assert bool(net.permit[v]) == (stake[v] >= nv)
    assert not any(bool(net.permit[s]) for s in servers)
    for s in servers:
        net.stake[s] += 2 * n
    net.next_block()
    net.epoch()
    assert not any(bool(net.permit[v]) for v in validators)
    for s in servers:
        assert bool(net.permit[s]) == (stake[s] + 2 * n >= nv)


def test_epoch_outputs_single_staker_registered_no_weights() -> None:
    net = MockSubnet([1.0], params(), tempo=65534)
    result = net.epoch(1e9)
    total = float(result.server_emission.sum() + result.validator_emission.sum())
    assert total == pytest.approx(1e9, abs=1000)


def test_can_set_self_weight_as_subnet_owner() -> None:
    """The owner's uid keeps its self-weight: both uids it weights earn equal incentive."""
    net = MockSubnet([5e12, 0.0], params(), tempo=65534)
    net.owner_uid = 0
    net.permit = torch.tensor([True, False])
    net.next_block(2)
    net.set_weights(0, [0, 1], [M // 2, M // 2])
    result = net.epoch(1e9)
    assert float(result.server_emission[0]) > 0 and float(result.server_emission[1]) > 0
    assert float(result.server_emission[0]) == pytest.approx(float(result.server_emission[1]))
