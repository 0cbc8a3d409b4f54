"""Reading what a validator publishes: its aggregates and checkpoints, over pinned signed HTTPS.

The one client for both: a miner catching up to θ_w and a non-lead validator following the
lead. Every answer is checked before it is returned (the aggregate is for the window and
subnet asked for; checkpoint bytes have the manifest's size and sha256). A dropped
connection, 429 or 5xx is tried again with ``protocol.retry``'s backoff for up to
``retry_s`` seconds; 404 means "not published (yet)".

Example:
    >>> link = ValidatorLink(signed_client, lead_endpoint, subnet_cfg)
    >>> header, payload = await link.aggregate(7)          # AggregateNotReady on 404
    >>> manifest = await link.latest_checkpoint()          # None when there is none
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from node.signed_http import NodeHttpError, is_transient, parse_error
from node.validators import ValidatorEndpoint
from protocol.messages import Aggregate, CheckpointManifest, MessageError, unpack_envelope
from protocol.retry import TRANSIENT_BACKOFF, Backoff, retry
from protocol.subnet import SubnetConfig

RETRY_S = 10.0  # how long one GET keeps trying through transient failures


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
        self, url: str, path: str, *, receiver_hotkey: str | None, pinned_fingerprint: str
    ) -> tuple[int, bytes]: ...


class ValidatorLink:
    """Reads what one validator publishes; holds no connection of its own (``client`` does)."""

    def __init__(self, client: Getter, endpoint: ValidatorEndpoint, cfg: SubnetConfig, *,
                 retry_s: float = RETRY_S, backoff: Backoff = TRANSIENT_BACKOFF) -> None:
        self.client = client
        self.endpoint = endpoint
        self.cfg = cfg
        self.retry_s = retry_s
        self.backoff = backoff

    async def _get(self, path: str) -> tuple[int, bytes]:
        """(status, body); ``NodeHttpError`` when no answer came within ``retry_s``."""
        return await retry(
            lambda: self.client.get(self.endpoint.url, path, receiver_hotkey=self.endpoint.hotkey,
                                    pinned_fingerprint=self.endpoint.fingerprint),
            timeout=self.retry_s, backoff=self.backoff, retry_on=(NodeHttpError,),
            again=lambda answer: is_transient(answer[0]),
        )

    async def aggregate_envelope(self, window: int) -> bytes:
        """The published ``Aggregate(window)`` envelope bytes, exactly as the validator stores them."""
        status, body = await self._get(f"/aggregate/{window}")
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
        status, body = await self._get(f"/checkpoint/{manifest.window}")
        if status != 200:
            raise FetchError(f"GET /checkpoint/{manifest.window}: {status} {parse_error(body)}")
        digest = hashlib.sha256(body).hexdigest()
        if digest != manifest.file_sha256 or len(body) != manifest.file_size:
            raise FetchError(f"checkpoint {manifest.window} bytes have sha256 {digest}, manifest says {manifest.file_sha256}")
        return body
