"""The validator through a full disk and a chain outage: status lines (not a warning per
tick, not a crash), then it closes the windows by itself once the trouble ends."""

from __future__ import annotations

import asyncio
import logging
import os

from bittensor.sp_core import Keypair

from chain.errors import ChainConnectionError
from node.logs import read_metrics
from protocol.retry import Backoff, Waiter
from validator.service import Validator
from validator.settings import ValidatorSettings

from .helpers import CFG, FakeChain, fix_secret, toy_dataset

VAL = Keypair.create_from_uri("//OutageValidator")
MINER = Keypair.create_from_uri("//OutageMiner")


def _enospc(*_a: object, **_k: object) -> None:
    raise OSError(28, os.strerror(28))


class DownChain(FakeChain):
    down = False

    async def block(self) -> int:
        if self.down:
            raise ChainConnectionError("read block: chain unreachable", reason="Connection refused")
        return self.block_now


async def _until(check, seconds: float = 30.0) -> None:
    waiter = Waiter(seconds, Backoff.every(0.05))
    while not check():
        assert await waiter.pause(), "timed out"


def _lines(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def test_a_full_disk_then_a_chain_outage_are_waited_out(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="swarmtrain.validator")
    chain = DownChain(CFG.netuid, [VAL.ss58_address, MINER.ss58_address], [100.0, 0.0], tempo=5)
    settings = ValidatorSettings(netuid=CFG.netuid, state_dir=tmp_path / "v", port=0, poll_interval_s=0.02)
    fix_secret(tmp_path / "v")
    v = Validator(chain, VAL, CFG, settings, toy_dataset(), hotkey=VAL.ss58_address)
    await v.start()
    stop = asyncio.Event()
    running = asyncio.create_task(v.run(stop=stop))
    try:
        with monkeypatch.context() as m:
            m.setattr(os, "fsync", _enospc)
            chain.block_now = CFG.blocks_per_window  # window 0 is over: closing it needs the disk
            await asyncio.sleep(1.0)  # many ticks on a full disk
            assert not running.done() and not (v.state.root / "aggregates" / "00000000.bin").exists()
        await _until(lambda: v.state.model.window == 1)  # room again: the window closes by itself
        chain.down = True
        await asyncio.sleep(1.0)  # many ticks without a chain
        chain.block_now, chain.down = 2 * CFG.blocks_per_window, False
        await _until(lambda: v.state.model.window == 2)
    finally:
        stop.set()
        await running
        await v.close()
    full = _lines(caplog, "waiting for room to write the validator's state")
    assert len(full) == 1 and "No space left on device" in full[0] and str(v.state.root) in full[0]
    assert "free space" in full[0] and len(_lines(caplog, "room to write the validator's state at /")) == 2  # + back
    down = _lines(caplog, "waiting for the chain at")
    assert len(down) == 1 and "Connection refused" in down[0] and len(_lines(caplog, "is back after")) == 2
    assert [r["window"] for r in read_metrics(v.state.root / "metrics.jsonl")] == [0, 1]
    assert not [p.name for p in v.state.root.rglob("*") if p.name.endswith(".tmp")]
