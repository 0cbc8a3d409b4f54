"""A real miner against a real validator, in one event loop, over pinned HTTPS on 127.0.0.1.

The chain is a small in-memory fake (blocks tick on a timer; serve/commit/metagraph),
so this checks the miner/validator wire agreement in a few seconds without the devnet.
"""

import asyncio
from types import SimpleNamespace

import numpy as np

from chain.types import Metagraph
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


class TickingChain:
    """Blocks advance every ``block_time`` seconds; neurons serve, commit and are listed."""

    def __init__(self, hotkeys: list[str], block_time: float = 0.2) -> None:
        self.hotkeys = hotkeys
        self.block_time = block_time
        self.start = asyncio.get_running_loop().time()
        self.axons: dict[str, str] = {}
        self.commitments: dict[str, str] = {}
        self.weights: list[dict[int, float]] = []

    async def block(self) -> int:
        return int((asyncio.get_running_loop().time() - self.start) / self.block_time)

    async def wait_for_block(self, block: int, *, timeout: float) -> int:
        while (current := await self.block()) < block:
            await asyncio.sleep(self.block_time / 2)
        return current

    async def metagraph(self, netuid: int) -> Metagraph:
        n = len(self.hotkeys)
        return Metagraph(
            netuid=netuid, block=await self.block(), uids=list(range(n)), hotkeys=self.hotkeys,
            coldkeys=self.hotkeys, stake=[1000.0] + [0.0] * (n - 1), validator_permit=[True] + [False] * (n - 1),
            axons=[self.axons.get(h) for h in self.hotkeys], last_update=[0] * n, incentive=[0.0] * n,
            dividends=[0.0] * n, emission=[0.0] * n, consensus=[0.0] * n, commitments=dict(self.commitments),
        )

    async def hyperparameters(self, netuid: int) -> SimpleNamespace:
        return SimpleNamespace(tempo=20)

    async def serve(self, wallet, netuid: int, ip: str, port: int) -> None:
        self.axons[wallet.hotkey.ss58_address] = f"{ip}:{port}"

    async def commit(self, wallet, netuid: int, data: str) -> None:
        self.commitments[wallet.hotkey.ss58_address] = data

    async def set_weights(self, wallet, netuid: int, weights: dict[int, float]) -> None:
        self.weights.append(dict(weights))


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
