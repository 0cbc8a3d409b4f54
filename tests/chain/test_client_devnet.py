"""The chain facade against a real devnet subprocess (one devnet for the module, fresh wallets per test).

Covers register (idempotent), serve, commit + read back, stake -> validator permit,
set weights, the weights rate limit, hyperparameters and metagraph fields.
Runtime: ~15-30 s for the module (block time 0.2 s, tempo 10).
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from chain.client import Chain
from chain.devnet.testing import run_devnet
from chain.errors import (
    ChainConnectionError,
    ChainError,
    ChainTimeoutError,
    NotRegisteredError,
    RateLimitedError,
)
from chain.wallets import coldkey_address, create_wallet, hotkey_address

NETUID = 1
TEMPO = 10


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))  # the SDK caches token symbols under ~/.bittensor
        with run_devnet(tmp_path_factory.mktemp("devnet"), block_time=0.2, tempo=TEMPO) as node:
            yield node


@pytest.fixture
def wallets(tmp_path: Path):
    def make(name: str):
        return create_wallet(name, "default", tmp_path / "wallets")

    return make


@pytest.fixture
async def chain(devnet) -> AsyncIterator[Chain]:
    async with await Chain.connect(devnet.url, timeout=20) as c:
        yield c


async def test_register_two_wallets_idempotent(chain: Chain, wallets):
    a, b = wallets("a"), wallets("b")
    uid_a = await chain.register(a, NETUID)
    uid_b = await chain.register(b, NETUID)
    assert uid_a != uid_b
    assert await chain.register(a, NETUID) == uid_a  # already registered: same uid, no error
    mg = await chain.metagraph(NETUID)
    assert mg.netuid == NETUID and mg.block > 0
    assert mg.hotkeys[mg.uids.index(uid_a)] == hotkey_address(a)
    assert mg.coldkeys[mg.uids.index(uid_b)] == coldkey_address(b)
    assert mg.uid_of(hotkey_address(b)) == uid_b
    n = len(mg.uids)
    for column in (
        mg.stake,
        mg.validator_permit,
        mg.axons,
        mg.last_update,
        mg.incentive,
        mg.dividends,
        mg.emission,
        mg.consensus,
    ):
        assert len(column) == n


async def test_serve_and_commit_read_back(chain: Chain, wallets, monkeypatch):
    w = wallets("server")
    uid = await chain.register(w, NETUID)
    text = json.dumps({"v": 1, "fp": "ab" * 32, "crit": "cd" * 32}, separators=(",", ":"))
    await chain.serve(w, NETUID, "127.0.0.1", 8443)
    await chain.commit(w, NETUID, text)
    mg = await chain.metagraph(NETUID)
    assert mg.axons[mg.uids.index(uid)] == "127.0.0.1:8443"
    assert mg.commitments[hotkey_address(w)] == text

    sent = []  # unchanged endpoint/commitment: nothing is sent again (restarts stay cheap)
    for name in ("execute", "submit_call"):
        original = getattr(chain.client, name)
        monkeypatch.setattr(
            chain.client, name, lambda *a, _o=original, **k: sent.append(a) or _o(*a, **k)
        )
    await chain.serve(w, NETUID, "127.0.0.1", 8443)
    await chain.commit(w, NETUID, text)
    assert sent == []
    await chain.serve(w, NETUID, "127.0.0.1", 8444)
    await chain.commit(w, NETUID, "changed")
    assert len(sent) == 2
    mg = await chain.metagraph(NETUID)
    assert mg.axons[mg.uids.index(uid)] == "127.0.0.1:8444"
    assert mg.commitments[hotkey_address(w)] == "changed"


async def test_unregistered_hotkey_gets_not_registered(chain: Chain, wallets):
    w = wallets("stranger")
    with pytest.raises(NotRegisteredError):
        await chain.serve(w, NETUID, "127.0.0.1", 1)
    with pytest.raises(NotRegisteredError):
        await chain.set_weights(w, NETUID, {0: 1.0})
    with pytest.raises(NotRegisteredError):
        await chain.commit(w, NETUID, "x")


async def test_stake_gives_permit_weights_and_rate_limit(chain: Chain, wallets):
    validator, miner = wallets("validator"), wallets("miner")
    v_uid = await chain.register(validator, NETUID)
    m_uid = await chain.register(miner, NETUID)
    await chain.add_stake(validator, NETUID, 100.0)
    hp = await chain.hyperparameters(NETUID)
    assert hp.tempo == TEMPO and hp.weights_rate_limit > 0 and hp.burn > 0

    await chain.wait_for_block(
        await chain.block() + TEMPO + 1, timeout=30
    )  # an epoch assigns permits
    mg = await chain.metagraph(NETUID)
    i = mg.uids.index(v_uid)
    # at least what it staked: an epoch nobody earns in pays validators by stake (as the chain)
    assert 100.0 <= mg.stake[i] <= 100.0 + 3 * (TEMPO + 1)
    assert mg.validator_permit[i]

    await chain.set_weights(validator, NETUID, {m_uid: 2.0, v_uid: 0.0})
    with pytest.raises(RateLimitedError) as info:
        await chain.set_weights(validator, NETUID, {m_uid: 1.0})
    assert info.value.blocks is not None and 0 < info.value.blocks <= hp.weights_rate_limit

    await chain.wait_for_block(await chain.block() + info.value.blocks, timeout=30)
    await chain.set_weights(validator, NETUID, {m_uid: 1.0})  # allowed again
    mg = await chain.metagraph(NETUID)
    assert mg.last_update[i] > 0

    await chain.wait_for_block(await chain.block() + TEMPO + 1, timeout=30)
    mg = await chain.metagraph(NETUID)
    assert mg.incentive[mg.uids.index(m_uid)] > 0  # the epoch paid the weighted miner


async def test_pow_register_refused_where_subnet_disallows_it(chain: Chain, wallets):
    hp = await chain.hyperparameters(NETUID)
    assert hp.pow_registration_allowed is False  # the devnet's genesis subnet takes burns only
    with pytest.raises(ChainError, match="proof-of-work registration.*not enabled PoW"):
        await chain.register(wallets("pow"), NETUID, pow=True, pow_timeout=10)


async def test_wait_for_block_times_out(chain: Chain):
    now = await chain.block()
    with pytest.raises(ChainTimeoutError):
        await chain.wait_for_block(now + 10_000, timeout=0.5)
    assert await chain.wait_for_block(now, timeout=1) >= now


async def test_unknown_subnet_is_a_chain_error(chain: Chain, wallets):
    with pytest.raises(ChainError, match="subnet 77 does not exist"):
        await chain.metagraph(77)
    with pytest.raises(ChainError, match="subnet 77 does not exist"):
        await chain.register(wallets("x"), 77)


async def test_connect_to_nothing_says_start_a_devnet():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        ChainConnectionError, match="no devnet at .* start one with `swarmtrain devnet`"
    ):
        await Chain.connect(f"devnet://127.0.0.1:{port}", timeout=5)
