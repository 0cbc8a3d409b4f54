"""The other validators' model hashes, for the dashboard's agreement column.

Every validator serves ``GET /status`` (window, model hash); ``PeerWatch`` reads the other
validators' (pinned to the fingerprints on chain) at most every ``interval_s`` seconds, in
the background and only while someone looks (``poke`` is called by the dashboard's data
route), and keeps the last answer of each.

Example:
    >>> peers = PeerWatch(self_hotkey, interval_s=10, timeout_s=5)
    >>> peers.poke(metagraph)            # starts a refresh when the last one is old
    >>> peers.snapshot()                 # [{"uid", "hotkey", "url", "window", "model_hash", "error", "at"}]
    >>> await peers.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from chain.types import Metagraph
from node.fetch import PinnedReader
from node.signed_http import NodeHttpError
from node.validators import ValidatorEndpoint, find_validators

log = logging.getLogger("swarmtrain.validator.peers")


class PeerWatch:
    """Last known ``/status`` of every other validator with an endpoint on chain."""

    def __init__(self, self_hotkey: str, *, interval_s: float, timeout_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.self_hotkey = self_hotkey
        self.interval_s = interval_s
        self.clock = clock
        self.reader = PinnedReader(timeout=timeout_s)
        self.peers: dict[str, dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._last = float("-inf")

    def poke(self, metagraph: Metagraph | None) -> None:
        """Refresh in the background when the last refresh is older than ``interval_s``."""
        if metagraph is None or (self._task is not None and not self._task.done()):
            return
        if self.clock() - self._last < self.interval_s:
            return
        self._last = self.clock()
        others = [v for v in find_validators(metagraph, require_permit=False) if v.hotkey != self.self_hotkey]
        self.peers = {h: p for h, p in self.peers.items() if h in {v.hotkey for v in others}}
        self._task = asyncio.get_running_loop().create_task(self.refresh(others))

    async def refresh(self, endpoints: list[ValidatorEndpoint]) -> None:
        await asyncio.gather(*(self._read(v) for v in endpoints))

    async def _read(self, v: ValidatorEndpoint) -> None:
        row: dict[str, Any] = {"uid": v.uid, "hotkey": v.hotkey, "url": v.url, "stake": v.stake,
                               "window": None, "model_hash": None, "error": None, "at": time.time()}
        try:
            status, body = await self.reader.get(v.url, "/status", pinned_fingerprint=v.fingerprint)
            doc = json.loads(body) if status == 200 else {}
            row.update(window=doc.get("window"), model_hash=doc.get("model_hash"))
            if status != 200:
                row["error"] = f"HTTP {status}"
        except (NodeHttpError, ValueError) as exc:
            row["error"] = str(exc)[:200]
        self.peers[v.hotkey] = row

    def snapshot(self) -> list[dict[str, Any]]:
        return sorted(self.peers.values(), key=lambda p: p["uid"])

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # shutting down
                await self._task
        await self.reader.close()
