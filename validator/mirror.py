"""Copy what a validator publishes into its S3-compatible bucket (subnets with ``storage = "s3"``).

The validator's state directory stays the record (it is written first, atomically, and
a restart re-applies from it); the bucket is where other nodes read. Uploads run in one
background task, in order, each retried until it is stored, so the window loop never
waits for the network: an aggregate is enqueued the moment it exists and goes up while
the validator applies it and reopens intake. Checkpoints go up data first, then their
manifest, then ``checkpoints/latest.json`` (what readers look at), then old ones are
deleted; aggregates older than the retention are deleted as new ones arrive.

Example:
    >>> mirror = Mirror(ObjectStore(location, key_id=..., secret=...), read_location=public)
    >>> mirror.start(); mirror.resync(state.store)
    >>> mirror.aggregate(7, envelope)              # returns at once; uploaded in the background
    >>> await mirror.close(timeout=30)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable

from node.checkpoints import CheckpointStore
from node.logs import progress_line
from node.storage import (
    LATEST_MANIFEST,
    ObjectStore,
    StorageError,
    StoreLocation,
    aggregate_name,
    checkpoint_name,
    manifest_name,
)
from protocol.messages import CheckpointManifest
from protocol.retry import Backoff, Waiter
from validator.app import manifest_of
from validator.settings import ValidatorSettings

log = logging.getLogger("swarmtrain.validator.mirror")

Job = Callable[[], Awaitable[None]]
UPLOAD_BACKOFF = Backoff(first=0.5, cap=30.0)  # between attempts of one upload


class Mirror:
    """An ordered, retrying upload queue into one bucket location."""

    def __init__(self, store: ObjectStore, *, read_location: StoreLocation, keep_aggregates: int = 500,
                 keep_checkpoints: int = 3) -> None:
        self.store = store
        self.read_location = read_location  # what the commitment publishes (read-only keys)
        self.keep_aggregates = keep_aggregates
        self.keep_checkpoints = keep_checkpoints
        self.queue: asyncio.Queue[tuple[str, Job]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.failures = 0  # failed attempts so far (each is retried)

    @property
    def uploaded_bytes(self) -> int:
        return self.store.bytes_out

    def key(self, name: str) -> str:
        return self.store.location.key(name)

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._worker(), name="s3-mirror")

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until every enqueued upload is stored; False on timeout."""
        try:
            await asyncio.wait_for(self.queue.join(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def close(self, timeout: float = 30.0) -> None:
        """Give pending uploads ``timeout`` seconds, then stop (a restart resyncs the rest)."""
        if self.task is not None:
            if not await self.wait_idle(timeout):
                log.warning(progress_line("stopping with uploads pending; the next start uploads them",
                                          pending=self.queue.qsize()))
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        await self.store.close()

    async def _worker(self) -> None:
        while True:
            what, job = await self.queue.get()
            try:
                await self._until_done(what, job)
            finally:
                self.queue.task_done()

    async def _until_done(self, what: str, job: Job) -> None:
        """Run ``job`` until it is stored: the bucket is the only copy other nodes read, so an
        upload is never given up (``close`` stops the worker; a restart resyncs)."""
        waiter = Waiter(math.inf, UPLOAD_BACKOFF)
        while True:
            try:
                await job()
                return
            except StorageError as exc:
                self.failures += 1
                log.warning(progress_line("upload failed, retrying", what=what, reason=exc))
                await waiter.pause()

    # ---- what gets uploaded ---------------------------------------------------------------

    def aggregate(self, window: int, envelope: bytes) -> None:
        """Enqueue Aggregate(window)'s envelope (and the deletion of the one past retention)."""

        async def job() -> None:
            await self.store.put(self.key(aggregate_name(window)), envelope)
            if window >= self.keep_aggregates:
                await self.store.delete([self.key(aggregate_name(window - self.keep_aggregates))])

        self.queue.put_nowait((f"aggregate {window}", job))

    def checkpoint(self, manifest: CheckpointManifest, data: bytes) -> None:
        """Enqueue θ_window's checkpoint: data, manifest, latest pointer, then prune old ones."""

        async def job() -> None:
            text = manifest.model_dump_json().encode()
            await self.store.put(self.key(checkpoint_name(manifest.window)), data)
            await self.store.put(self.key(manifest_name(manifest.window)), text)
            await self.store.put(self.key(LATEST_MANIFEST), text)
            await self.prune_checkpoints(manifest.window)

        self.queue.put_nowait((f"checkpoint {manifest.window}", job))

    def checkpoint_from(self, local: CheckpointStore, manifest: CheckpointManifest) -> None:
        """Enqueue the checkpoint ``manifest`` names, read from the validator's own store."""
        data = local.read_checkpoint(manifest.window)
        if data is not None:
            self.checkpoint(manifest, data)

    async def prune_checkpoints(self, newest: int) -> None:
        """Delete checkpoint objects of all but the newest ``keep_checkpoints`` windows."""
        keys = await self.store.list_keys(self.key("checkpoints/"))
        windows = sorted({int(k.rsplit("/", 1)[-1].split(".")[0]) for k in keys
                          if k.rsplit("/", 1)[-1].split(".")[0].isdigit()})
        keep = set(windows[-self.keep_checkpoints:]) | {newest}
        old = [self.key(n) for w in windows if w not in keep for n in (checkpoint_name(w), manifest_name(w))]
        if old:
            await self.store.delete(old)

    def resync(self, local: CheckpointStore) -> None:
        """After a (re)start: upload the newest local checkpoint and the aggregates since it
        when the bucket lacks them (a crash may have cut the queue short)."""

        async def job() -> None:
            latest = local.latest_checkpoint()
            manifest = manifest_of(local, latest) if latest is not None else None
            if manifest is not None:
                remote = await self.store.get(self.key(LATEST_MANIFEST))
                if remote is None or CheckpointManifest.model_validate_json(remote).window != manifest.window:
                    self.checkpoint_from(local, manifest)
            since = manifest.window if manifest is not None else 0
            for window in local.aggregate_windows():
                if window >= since and not await self.store.exists(self.key(aggregate_name(window))):
                    envelope = local.get_aggregate(window)
                    if envelope is not None:
                        self.aggregate(window, envelope)

        self.queue.put_nowait(("resync", job))


def make_mirror(storage: str, settings: ValidatorSettings) -> Mirror | None:
    """The validator's ``Mirror`` for an ``s3`` subnet (None for ``validator`` storage);
    ValueError naming the missing flags when the operator set no bucket."""
    if storage != "s3":
        return None
    s = settings
    if not s.s3_endpoint or not s.s3_bucket:
        raise ValueError("this subnet keeps aggregates and checkpoints in S3 (subnet config storage = s3): "
                         "run the validator with --s3-endpoint URL --s3-bucket NAME (and the "
                         "SWARMTRAIN_VALIDATOR_S3_* credentials, see docs/validator.md)")
    location = StoreLocation(endpoint=s.s3_endpoint, bucket=s.s3_bucket, prefix=s.s3_prefix or None,
                             region=s.s3_region)
    read = StoreLocation(**{**location.model_dump(), "key_id": s.s3_read_key_id, "secret": s.s3_read_secret})
    secret = s.s3_write_secret.get_secret_value() if s.s3_write_secret is not None else None
    store = ObjectStore(location, key_id=s.s3_write_key_id, secret=secret, timeout_s=s.s3_timeout_s)
    return Mirror(store, read_location=read, keep_checkpoints=s.keep_checkpoints)
