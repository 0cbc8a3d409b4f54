"""A real miner against a real validator, in one event loop, over pinned HTTPS on 127.0.0.1.

The chain is a small in-memory fake (blocks tick on a timer; serve/commit/metagraph),
so this checks the miner/validator wire agreement in a few seconds without the devnet.
"""

import asyncio

import numpy as np

from chain.in_memory import TickingChain
from chain.wallets import create_wallet
from miner.service import Miner, MinerOptions
from miner.state import MinerStateStore
from miner.trainer import InnerTrainer
from node.logs import MetricsWriter, read_metrics
from node.signed_http import SignedClient
from protocol.data import TokenDataset
from protocol.model import preset
from protocol.subnet import SubnetConfig
from validator.service import Validator
from validator.settings import ValidatorSettings

CFG = SubnetConfig(preset="tiny", dataset_hash="", seq_len=32, batch_size=4, inner_steps=4,
                   blocks_per_window=10, eval_samples=4, checkpoint_every=2)


def _dataset() -> TokenDataset:
    # A learnable stream: short repeating phrases, so one window of training helps.
    text = np.frombuffer(b"the quick brown fox jumps over the lazy dog. " * 2000, dtype=np.uint8)
    return TokenDataset.from_arrays("phrases", text[:80_000].astype("<u2"), text[80_000:].astype("<u2"))


async def test_miner_and_validator_agree_over_https(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    vwallet = create_wallet("validator", "default", tmp_path / "wallets")
    mwallet = create_wallet("miner", "default", tmp_path / "wallets")
    chain = TickingChain([vwallet.hotkey.ss58_address, mwallet.hotkey.ss58_address])
    ds = _dataset()
    settings = ValidatorSettings(netuid=CFG.netuid, state_dir=tmp_path / "validator", port=0, poll_interval_s=0.1)
    validator = Validator(chain, vwallet, CFG, settings, ds)
    await validator.start()
    client = SignedClient(mwallet, timeout=10)
    miner = Miner(
        chain=chain, wallet=mwallet, cfg=CFG, dataset=ds, trainer=InnerTrainer(preset("tiny"), lr=1e-2),
        store=MinerStateStore(tmp_path / "miner"), client=client,
        metrics=MetricsWriter(tmp_path / "miner" / "metrics.jsonl"),
        options=MinerOptions(sync_timeout_s=20, poll_interval_s=0.05),
    )
    stop = asyncio.Event()
    vtask = asyncio.create_task(validator.run(stop=stop))
    try:
        await asyncio.wait_for(miner.run(max_windows=3), timeout=60)
    finally:
        stop.set()
        await asyncio.wait_for(vtask, timeout=30)
        await validator.close()
        await client.close()
    mine = [r for r in read_metrics(tmp_path / "miner" / "metrics.jsonl") if r.get("event") == "window"]
    theirs = {r["window"]: r for r in read_metrics(tmp_path / "validator" / "metrics.jsonl")}
    assert len(mine) == 3
    trained = [r for r in mine if r["submitted"]]  # a window can end during training: then no post
    assert trained, mine
    for record in mine:
        assert theirs[record["window"]]["model_hash"] == record["model_hash"]
    for record in trained:
        assert record["accepted"] == [0], record["refused"]
        assert 1 in theirs[record["window"]]["submissions"]
    assert any(1 in theirs[r["window"]]["contributors"] for r in trained), [theirs[r["window"]] for r in trained]
