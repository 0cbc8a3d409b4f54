"""Window sync from the chain, and catch-up from the lead validator.

``WindowClock`` turns chain blocks into windows. ``catch_up`` brings a local model θ_v
up to θ_target through ``node.fetch.ValidatorLink``: it loads the validator's newest
checkpoint when that is ahead of us (or when our model has diverged), then replays the
aggregates since, checking each resulting model hash.

Example:
    >>> clock = WindowClock(chain, cfg.blocks_per_window)
    >>> w = await clock.window()
    >>> model = await catch_up(model, ValidatorLink(client, lead, cfg), w)
"""

from __future__ import annotations

import logging
from typing import Protocol

from node.fetch import FetchError, ValidatorLink
from node.logs import progress_line
from node.model_state import ModelDesyncError, ModelState, ModelStateError
from protocol.messages import CheckpointManifest
from protocol.subnet import SubnetConfig
from protocol.windows import window_of, window_start_block

log = logging.getLogger("swarmtrain.miner.sync")


class SyncError(FetchError):
    """The miner could not obtain the network's model for a window."""


class ChainClock(Protocol):
    """The part of ``chain.client.Chain`` the clock needs."""

    async def block(self) -> int: ...

    async def wait_for_block(self, block: int, *, timeout: float) -> int: ...


class WindowClock:
    """Windows from chain blocks: ``window = block // blocks_per_window``."""

    def __init__(self, chain: ChainClock, blocks_per_window: int) -> None:
        self.chain = chain
        self.bpw = blocks_per_window

    async def window(self) -> int:
        return window_of(await self.chain.block(), self.bpw)

    async def wait_for_window(self, window: int, *, timeout: float) -> int:
        """Wait until the chain reaches the first block of ``window``; returns the block."""
        return await self.chain.wait_for_block(window_start_block(window, self.bpw), timeout=timeout)


def model_from_checkpoint(data: bytes, manifest: CheckpointManifest, cfg: SubnetConfig) -> ModelState:
    """A ModelState from checkpoint bytes; checks window and model hash against the manifest."""
    try:
        model = ModelState.from_bytes(data, cfg)
    except ModelStateError as exc:
        raise SyncError(f"checkpoint {manifest.window} is unusable: {exc}") from exc
    if model.hash() != manifest.model_hash:
        raise SyncError(f"checkpoint {manifest.window}: model hash {model.hash()} != manifest {manifest.model_hash}")
    if int(model.window) != manifest.window:
        raise SyncError(f"checkpoint file holds window {model.window}, manifest says {manifest.window}")
    return model


async def load_latest_checkpoint(link: ValidatorLink, model: ModelState, *, force: bool = False) -> ModelState:
    """The validator's newest checkpoint if it is ahead of ``model`` (or ``force``), else ``model``."""
    manifest = await link.latest_checkpoint()
    if manifest is None or (manifest.window <= model.window and not force):
        return model
    log.info(progress_line("loading checkpoint", w=manifest.window, validator=link.endpoint.uid,
                           hotkey=link.endpoint.hotkey))
    return model_from_checkpoint(await link.checkpoint_bytes(manifest), manifest, link.cfg)


async def replay(model: ModelState, link: ValidatorLink, target: int) -> ModelState:
    """Apply Aggregate(v), v = model.window .. target-1; raises AggregateNotReady at a gap."""
    while model.window < target:
        header, payload = await link.aggregate(model.window)
        model.apply_aggregate(header, payload)
    return model


async def catch_up(model: ModelState, link: ValidatorLink, target: int) -> ModelState:
    """Bring ``model`` to θ_target; checkpoint first when more than one window behind.

    On a hash mismatch (our model diverged) it reloads the newest checkpoint and
    replays once more; a second mismatch is raised as ``SyncError``.
    """
    if model.window >= target:
        return model
    if target - model.window > 1:
        model = await load_latest_checkpoint(link, model)
    try:
        return await replay(model, link, target)
    except ModelDesyncError as exc:
        log.warning(progress_line("model desync: reloading the validator's checkpoint", w=model.window, reason=exc))
        fresh = await load_latest_checkpoint(link, model, force=True)
        if fresh is model:
            raise SyncError(f"model diverged at window {model.window} and no checkpoint is available") from exc
        try:
            return await replay(fresh, link, target)
        except ModelDesyncError as again:
            raise SyncError(f"still diverged after loading a checkpoint: {again}") from again
