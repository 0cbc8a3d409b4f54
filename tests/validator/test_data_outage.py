"""A validator whose data source fails while it evaluates keeps running and closes the window
on a later tick (the shards are fetched again)."""

from __future__ import annotations

from bittensor.sp_core import Keypair

from node.shard_sources import ShardFetchError
from validator.service import Validator
from validator.settings import ValidatorSettings

from .helpers import CFG, FakeChain, fix_secret, toy_dataset

VAL = Keypair.create_from_uri("//OutageValidator")
MINER = Keypair.create_from_uri("//OutageMiner")


async def test_shard_fetch_failure_is_retried_next_tick(tmp_path, monkeypatch):
    chain = FakeChain(CFG.netuid, [VAL.ss58_address, MINER.ss58_address], [100.0, 0])
    fix_secret(tmp_path / "v")
    v = Validator(chain, VAL, CFG, ValidatorSettings(netuid=CFG.netuid, state_dir=tmp_path / "v", port=0, poll_interval_s=0.05),
                  toy_dataset(), hotkey=VAL.ss58_address)
    await v.start()
    try:
        calls = []

        def failing_close() -> None:
            calls.append(1)
            raise ShardFetchError("GET http://127.0.0.1:1/train-00007.tok: connection refused")

        real_val_loss = v._val_loss
        monkeypatch.setattr(v, "_val_loss", failing_close)
        chain.block_now = CFG.blocks_per_window
        await v.tick()  # no exception: logged, retried
        assert calls and v.state.model.window == 0
        monkeypatch.setattr(v, "_val_loss", real_val_loss)
        await v.tick()
        assert v.state.model.window == 1
    finally:
        await v.close()
