"""Devnet restarts: SIGTERM and kill -9 (mid-submission) lose no registration, weight or emission."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import bittensor as bt
import pytest
from bittensor.result import RpcConnectionError

from chain.devnet.database import DB_NAME
from chain.devnet.testing import run_devnet, sdk_client
from chain.wallets import create_wallet

pytestmark = pytest.mark.timeout(120)
SM = bt.calls.SubtensorModule
RAO = 10**9


def make_wallet(home: Path, name: str) -> bt.Wallet:
    return create_wallet(name, "default", home / "wallets", overwrite=True)


async def next_epoch(client: bt.Client, timeout: float = 20.0) -> int:
    start = int(await client.query(("SubtensorModule", "LastEpochBlock"), [1]))

    async def poll() -> int:
        while (now := int(await client.query(("SubtensorModule", "LastEpochBlock"), [1]))) <= start:
            await asyncio.sleep(0.05)
        return now

    return await asyncio.wait_for(poll(), timeout)


async def build_history(url: str, val: bt.Wallet, miner: bt.Wallet) -> dict:
    """Register, stake, get a permit, set weights, earn emission; return what must survive."""
    async with sdk_client(url) as client:
        for wallet in (val, miner):
            done = await client.submit_call(
                SM.burned_register(netuid=1, hotkey=wallet.hotkey.ss58_address), wallet)
            assert done.success, done.message
        staked = await client.execute(bt.AddStake(hotkey_ss58=val.hotkey.ss58_address, netuid=1,
                                                  amount_tao=10), val)
        assert staked.success, staked.message
        await next_epoch(client)
        weights = await client.execute(bt.SetWeights(netuid=1, weights={1: 1.0}), val)
        assert weights.success, weights.message
        await next_epoch(client)
        return await observe(client)


async def observe(client: bt.Client) -> dict:
    graph = await client.subnets.metagraph(1)
    return {
        "hotkeys": graph.hotkeys,
        "registered": [n.block_at_registration for n in graph.neurons],
        "weights": await client.query_map(("SubtensorModule", "Weights"), [1]),
        "incentive": [n.incentive for n in graph.neurons],
        "dividends": [n.dividends for n in graph.neurons],
        "emission": [n.emission.rao for n in graph.neurons],
        "stake": [n.alpha_stake.rao for n in graph.neurons],
        "head": await client.block(),
        "block1": await client._substrate.block_hash(1),
    }


def assert_survived(before: dict, after: dict) -> None:
    for key in ("hotkeys", "registered", "weights", "incentive", "dividends", "emission", "block1"):
        assert after[key] == before[key], key
    assert after["emission"][1] > 0 and after["dividends"][0] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(after["stake"], before["stake"], strict=True))
    assert after["head"] >= before["head"]


def check_database(state_dir: Path) -> None:
    """Integrity check and an unbroken parent-hash chain from genesis to the head."""
    conn = sqlite3.connect(state_dir / DB_NAME)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT number, hash, parent FROM blocks ORDER BY number").fetchall()
    finally:
        conn.close()
    assert [r[0] for r in rows] == list(range(len(rows)))
    assert all(child[2] == parent[1] for parent, child in zip(rows, rows[1:], strict=False))


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # the SDK caches token symbols under ~/.bittensor
    return tmp_path


async def test_sigterm_restart_keeps_registrations_weights_and_emission(home):
    val, miner = make_wallet(home, "val"), make_wallet(home, "miner")
    with run_devnet(home / "state", block_time=0.1, tempo=5) as net:
        before = await build_history(net.url, val, miner)
        stopped_at = net.health()["block"]
        assert net.stop() == 0  # graceful: SIGTERM, exit code 0
        net.start()
        async with sdk_client(net.url) as client:
            after = await observe(client)
            # continues from the stored block: no reset, no jump
            assert stopped_at <= after["head"] < stopped_at + 30
            await client.wait_for_block(after["head"] + 2, timeout=10)
    assert_survived(before, after)
    check_database(home / "state")


async def test_kill9_mid_submission_loses_nothing_confirmed(home):
    val, miner, payer = (make_wallet(home, n) for n in ("val", "miner", "payer"))
    dest = miner.coldkeypub.ss58_address
    with run_devnet(home / "state", block_time=0.1, tempo=5) as net:
        before = await build_history(net.url, val, miner)
        async with sdk_client(net.url) as client:
            start = (await client.query(("System", "Account"), [dest]))["data"]["free"]
            confirmed = 0

            async def pay_forever() -> None:
                nonlocal confirmed
                while True:
                    call = bt.calls.Balances.transfer_keep_alive(dest=dest, value=RAO)
                    result = await client.submit_call(call, payer)
                    assert result.success, result.message
                    confirmed += 1

            payments = asyncio.create_task(pay_forever())
            while confirmed < 4:
                await asyncio.sleep(0.02)
            await asyncio.to_thread(net.kill9)  # a transfer is in flight or about to be
            with pytest.raises(RpcConnectionError):
                await asyncio.wait_for(payments, 15)
        check_database(home / "state")
        net.start()
        async with sdk_client(net.url) as client:
            after = await observe(client)
            account = await client.query(("System", "Account"), [dest])
            nonce = (await client.query(("System", "Account"),
                                        [payer.coldkeypub.ss58_address]))["nonce"]
    received = (account["data"]["free"] - start) // RAO
    assert confirmed >= 4 and received in (confirmed, confirmed + 1)  # +1: included, unanswered
    assert nonce == received
    assert_survived(before, after)
