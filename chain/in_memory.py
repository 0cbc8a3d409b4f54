"""An in-memory chain whose blocks tick on a timer: for checking nodes' wire agreement in
seconds, without the devnet (tests and ``scripts/bench_storage.py``).

uid i is ``hotkeys[i]``; uid 0 holds stake and the only validator permit; ``serve`` and
``commit`` are listed in the next metagraph; weights are recorded, never scored.

Example:
    >>> chain = TickingChain([validator_hotkey, miner_hotkey], block_time=0.2)
    >>> await chain.wait_for_block(5, timeout=5.0)
"""

from __future__ import annotations

import time
from typing import Any

from chain.types import Metagraph, SubnetHyperparams
from protocol.retry import poll_until


class TickingChain:
    """Block ``floor(elapsed / block_time)``; neurons serve, commit and are listed."""

    def __init__(self, hotkeys: list[str], block_time: float = 0.2, *, tempo: int = 20) -> None:
        self.hotkeys, self.block_time, self.tempo = hotkeys, block_time, tempo
        self.start = time.monotonic()
        self.axons: dict[str, str] = {}
        self.commitments: dict[str, str] = {}
        self.weights: list[dict[int, float]] = []

    async def block(self) -> int:
        return int((time.monotonic() - self.start) / self.block_time)

    async def wait_for_block(self, block: int, *, timeout: float) -> int:
        return await poll_until(self.block, lambda b: b >= block, timeout=timeout, interval=self.block_time / 4,
                                on_timeout=lambda b: TimeoutError(f"block {block} not reached (at {b})"))

    async def metagraph(self, netuid: int) -> Metagraph:
        n = len(self.hotkeys)
        return Metagraph(
            netuid=netuid, block=await self.block(), uids=list(range(n)), hotkeys=self.hotkeys,
            coldkeys=self.hotkeys, stake=[1000.0] + [0.0] * (n - 1), validator_permit=[True] + [False] * (n - 1),
            axons=[self.axons.get(h) for h in self.hotkeys], last_update=[0] * n, incentive=[0.0] * n,
            dividends=[0.0] * n, emission=[0.0] * n, consensus=[0.0] * n, commitments=dict(self.commitments))

    async def hyperparameters(self, netuid: int) -> SubnetHyperparams:
        return SubnetHyperparams(netuid=netuid, tempo=self.tempo, weights_rate_limit=0, commit_reveal_enabled=False,
                                 min_allowed_weights=0, max_weights_limit=65535, activity_cutoff=5000,
                                 immunity_period=0, max_allowed_uids=256, max_allowed_validators=64, burn=0.0)

    async def serve(self, wallet: Any, netuid: int, ip: str, port: int) -> None:
        self.axons[wallet.hotkey.ss58_address] = f"{ip}:{port}"

    async def commit(self, wallet: Any, netuid: int, data: str) -> None:
        self.commitments[wallet.hotkey.ss58_address] = data

    async def set_weights(self, wallet: Any, netuid: int, weights: dict[int, float]) -> None:
        self.weights.append(dict(weights))
