"""Reading what a validator publishes: aggregates, checkpoints and its subnet config, over pinned HTTPS.

The one client for all of it: a miner catching up to θ_w, a non-lead validator following the
lead, and any node or tool checking the lead's subnet config. Every answer is checked before
it is returned (the aggregate is for the window and subnet asked for; checkpoint bytes have
the manifest's size and sha256; the config has the hash committed on chain). A dropped
connection, 425, 429 or 5xx is tried again with ``protocol.retry``'s backoff for up to
``retry_s`` seconds; 404 means "not published (yet)". Requests go through a ``Getter``: a
node's ``SignedClient``, ``PinnedReader`` for tools without a wallet, or — where the subnet
keeps aggregates and checkpoints in object storage (``storage = "s3"``) — a
``node.storage.StoreGetter`` on the bucket the validator's commitment names. ``Links`` picks
which for the subnet, so the checks below run the same whatever the storage.

Example:
    >>> link = ValidatorLink(signed_client, lead_endpoint, subnet_cfg)
    >>> header, payload = await link.aggregate(7)          # AggregateNotReady on 404
    >>> manifest = await link.latest_checkpoint()          # None when there is none
    >>> links = Links(signed_client, subnet_cfg)           # HTTPS or the lead's bucket
    >>> header, payload = await links.to(lead_endpoint).aggregate(7)
    >>> async with PinnedReader(timeout=10) as reader:
    ...     cfg = await fetch_subnet_config(reader, lead_endpoint)   # SubnetConfigError
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from typing import Protocol

import aiohttp
from pydantic import ValidationError

from node.signed_http import (
    DEFAULT_MAX_RESPONSE_BYTES,
    NodeHttpError,
    ResponseTooLarge,
    is_transient,
    parse_error,
    read_bounded,
)
from node.storage import StoreGetter, StoreLocation, reader_for
from node.subnet_file import SubnetConfigError
from node.tls import pinned
from node.validators import ValidatorEndpoint
from protocol.limits import MAX_DOCUMENT_BYTES, response_limits
from protocol.messages import Aggregate, CheckpointManifest, MessageError, unpack_envelope
from protocol.retry import TRANSIENT_BACKOFF, Backoff, retry
from protocol.subnet import SubnetConfig

RETRY_S = 10.0  # how long one GET keeps trying through transient failures
SUBNET_CONFIG_PATH = "/subnet-config"
MAX_PUBLIC_BYTES = DEFAULT_MAX_RESPONSE_BYTES  # PinnedReader's bound when none is given


class FetchError(RuntimeError):
    """A validator answered with something unusable (an error status, malformed or foreign data)."""


class AggregateNotReady(FetchError):
    """The validator has not published the aggregate for this window (yet)."""

    def __init__(self, window: int) -> None:
        super().__init__(f"aggregate for window {window} is not published yet")
        self.window = window


class Getter(Protocol):
    """The part of ``node.signed_http.SignedClient`` the link needs."""

    async def get(
        self, url: str, path: str, *, receiver_hotkey: str | None, pinned_fingerprint: str,
        max_bytes: int = ..., on_chunk: Callable[[bytes], None] | None = None,
    ) -> tuple[int, bytes]: ...


class PinnedReader:
    """Unsigned GETs of a validator's public routes, pinned to the fingerprint on chain.

    For tools without a wallet (``swarmtrain status``, ``swarmtrain subnet fetch``) and the
    validator's view of its peers; the validator serves its GETs without a signature.
    """

    def __init__(self, *, timeout: float = 10.0) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def get(self, url: str, path: str, *, receiver_hotkey: str | None = None,
                  pinned_fingerprint: str, max_bytes: int = MAX_PUBLIC_BYTES,
                  on_chunk: Callable[[bytes], None] | None = None) -> tuple[int, bytes]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        target = url.rstrip("/") + path
        try:
            async with self._session.get(target, ssl=pinned(pinned_fingerprint)) as resp:
                return resp.status, await read_bounded(resp, max_bytes, on_chunk)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise NodeHttpError(f"GET {target} failed: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> PinnedReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def get_published(client: Getter, endpoint: ValidatorEndpoint, path: str, *, retry_s: float = RETRY_S,
                        backoff: Backoff = TRANSIENT_BACKOFF, max_bytes: int = MAX_DOCUMENT_BYTES,
                        hashing: Callable[[], Callable[[bytes], None]] | None = None) -> tuple[int, bytes]:
    """(status, body) of ``GET path`` at ``endpoint``, transient failures tried again for ``retry_s``
    seconds; ``NodeHttpError`` when no answer came; ``FetchError`` when the answer is over
    ``max_bytes`` (cut off there, not tried again). ``hashing`` gives each try a fresh
    ``on_chunk`` (a hash updated while the body streams in)."""

    async def once() -> tuple[int, bytes]:
        return await client.get(endpoint.url, path, receiver_hotkey=endpoint.hotkey,
                                pinned_fingerprint=endpoint.fingerprint, max_bytes=max_bytes,
                                on_chunk=hashing() if hashing is not None else None)

    try:
        return await retry(once, timeout=retry_s, backoff=backoff, retry_on=(NodeHttpError,),
                           again=lambda answer: is_transient(answer[0]))
    except ResponseTooLarge as exc:
        raise FetchError(f"validator uid {endpoint.uid}: {exc}") from exc


async def fetch_subnet_config(client: Getter, endpoint: ValidatorEndpoint, *, retry_s: float = RETRY_S) -> SubnetConfig:
    """The config a validator serves, checked against the hash it committed on chain
    (``SubnetConfigError`` otherwise)."""
    try:
        status, body = await get_published(client, endpoint, SUBNET_CONFIG_PATH, retry_s=retry_s)
    except FetchError as exc:  # an answer past the document bound
        raise SubnetConfigError(str(exc)) from exc
    if status != 200:
        code, reason = parse_error(body)
        raise SubnetConfigError(f"validator uid {endpoint.uid} answered GET {SUBNET_CONFIG_PATH} with "
                                f"{status} {code}: {reason}")
    try:
        cfg = SubnetConfig.model_validate(json.loads(body))
    except (ValueError, ValidationError) as exc:
        raise SubnetConfigError(f"validator uid {endpoint.uid} served an invalid subnet config: {exc}") from exc
    if endpoint.config_hash and cfg.config_hash() != endpoint.config_hash:
        raise SubnetConfigError(
            f"validator uid {endpoint.uid} serves a subnet config with hash {cfg.config_hash()[:12]}…, "
            f"but committed {endpoint.config_hash[:12]}… on chain: ask its operator, or fetch another validator's"
        )
    return cfg


class _StreamHash:
    """sha256 of a body as it streams in (the bytes are hashed once, while they arrive)."""

    def __init__(self) -> None:
        self.hash, self.size = hashlib.sha256(), 0

    def update(self, chunk: bytes) -> None:
        self.hash.update(chunk)
        self.size += len(chunk)

    def hexdigest(self, body: bytes) -> str:
        """The streamed hash; a getter that did not stream (``on_chunk`` unused) hashes ``body``."""
        return self.hash.hexdigest() if self.size == len(body) and self.size else hashlib.sha256(body).hexdigest()


class ValidatorLink:
    """Reads what one validator publishes; holds no connection of its own (``client`` does)."""

    def __init__(self, client: Getter, endpoint: ValidatorEndpoint, cfg: SubnetConfig, *,
                 retry_s: float = RETRY_S, backoff: Backoff = TRANSIENT_BACKOFF) -> None:
        self.client = client
        self.endpoint = endpoint
        self.cfg = cfg
        self.retry_s = retry_s
        self.backoff = backoff
        self.limits = response_limits(cfg)  # bytes read per answer, at most (derived from cfg)

    async def _get(self, path: str, max_bytes: int = MAX_DOCUMENT_BYTES,
                   hashing: Callable[[], Callable[[bytes], None]] | None = None) -> tuple[int, bytes]:
        """(status, body); ``NodeHttpError`` when no answer came within ``retry_s``; ``FetchError``
        past ``max_bytes``."""
        return await get_published(self.client, self.endpoint, path, retry_s=self.retry_s, backoff=self.backoff,
                                   max_bytes=max_bytes, hashing=hashing)

    async def aggregate_envelope(self, window: int) -> bytes:
        """The published ``Aggregate(window)`` envelope bytes, exactly as the validator stores them."""
        status, body = await self._get(f"/aggregate/{window}", self.limits.aggregate)
        if status == 404:
            raise AggregateNotReady(window)
        if status != 200:
            raise FetchError(f"GET /aggregate/{window}: {status} {parse_error(body)}")
        return body

    def parse_aggregate(self, window: int, envelope: bytes) -> tuple[Aggregate, bytes]:
        """(header, payload) of an envelope that must be ``Aggregate(window)`` of our subnet."""
        try:
            header, payload = unpack_envelope(envelope, Aggregate)
        except MessageError as exc:
            raise FetchError(f"validator sent a malformed aggregate for window {window}: {exc}") from exc
        if header.window != window or header.netuid != self.cfg.netuid:
            raise FetchError(f"asked for aggregate {window}, got window {header.window} netuid {header.netuid}")
        return header, payload

    async def aggregate(self, window: int) -> tuple[Aggregate, bytes]:
        return self.parse_aggregate(window, await self.aggregate_envelope(window))

    async def latest_checkpoint(self) -> CheckpointManifest | None:
        status, body = await self._get("/checkpoint/latest")
        if status == 404:
            return None
        if status != 200:
            raise FetchError(f"GET /checkpoint/latest: {status} {parse_error(body)}")
        try:
            return CheckpointManifest.model_validate_json(body)
        except ValueError as exc:
            raise FetchError(f"validator sent a malformed checkpoint manifest: {exc}") from exc

    async def checkpoint_bytes(self, manifest: CheckpointManifest) -> bytes:
        """The checkpoint file, read to at most ``manifest.file_size`` bytes (itself within the
        config's checkpoint bound) and hashed as it streams in."""
        if manifest.file_size > self.limits.checkpoint:
            raise FetchError(f"checkpoint {manifest.window} manifest announces {manifest.file_size} bytes, over the "
                             f"{self.limits.checkpoint}-byte bound of this subnet's model")
        streams: list[_StreamHash] = []

        def fresh() -> Callable[[bytes], None]:
            streams.append(_StreamHash())
            return streams[-1].update

        status, body = await self._get(f"/checkpoint/{manifest.window}", manifest.file_size, fresh)
        if status != 200:
            raise FetchError(f"GET /checkpoint/{manifest.window}: {status} {parse_error(body)}")
        digest = streams[-1].hexdigest(body) if streams else hashlib.sha256(body).hexdigest()
        if digest != manifest.file_sha256 or len(body) != manifest.file_size:
            raise FetchError(f"checkpoint {manifest.window} bytes have sha256 {digest}, manifest says {manifest.file_sha256}")
        return body


class Links:
    """``ValidatorLink``s that read from wherever the subnet keeps what validators publish.

    ``storage = "validator"``: the validator's HTTPS routes through ``client``. ``storage =
    "s3"``: the bucket the validator's commitment names, one ``StoreGetter`` per bucket kept
    open until ``close``; ``node.storage.StorageError`` when the commitment names none.
    Subnet configs are always read over HTTPS (``fetch_subnet_config``): they are not stored.
    """

    def __init__(self, client: Getter, cfg: SubnetConfig, *, retry_s: float = RETRY_S,
                 store_timeout_s: float = 60.0) -> None:
        self.client = client
        self.cfg = cfg
        self.retry_s = retry_s
        self.store_timeout_s = store_timeout_s
        self._stores: dict[StoreLocation, StoreGetter] = {}
        self._closed_bytes = 0

    @property
    def bytes_read(self) -> int:
        """Bytes read from buckets so far (what nodes no longer download from a validator)."""
        return self._closed_bytes + sum(store.store.bytes_in for store in self._stores.values())

    def getter(self, endpoint: ValidatorEndpoint) -> Getter:
        """Where ``endpoint``'s aggregates and checkpoints are read."""
        if self.cfg.storage != "s3":
            return self.client
        if endpoint.storage is not None and endpoint.storage in self._stores:
            return self._stores[endpoint.storage]
        store = reader_for(self.cfg.storage, endpoint.storage, timeout_s=self.store_timeout_s)
        assert store is not None and endpoint.storage is not None  # reader_for raised otherwise
        self._stores[endpoint.storage] = store
        return store

    def to(self, endpoint: ValidatorEndpoint) -> ValidatorLink:
        return ValidatorLink(self.getter(endpoint), endpoint, self.cfg, retry_s=self.retry_s)

    async def close(self) -> None:
        """Close the buckets' clients (``client`` belongs to the caller)."""
        self._closed_bytes = self.bytes_read
        stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            await store.close()
