"""Hotkey-signed HTTPS requests (``bittensor.http_auth``, btauth/1) over pinned TLS.

Client side, ``SignedClient`` signs each request with the wallet's hotkey for a
receiving hotkey and connects only to a server whose certificate has the pinned
fingerprint; it also sends the body's sha256 in ``HEADER_BODY_SHA256``. Server side,
``verify_headers`` checks the signature, receiver, freshness and replay from the headers
alone (before the body is read; ``check_body`` then checks the body against the declared
hash), and turns each failure into a 401 with its reason.

Example:
    >>> async with SignedClient(wallet, timeout=30) as client:
    ...     status, body = await client.post(url, "/submit", data, receiver_hotkey=vhk,
    ...                                      pinned_fingerprint=fp)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web
from bittensor import http_auth
from bittensor.sp_core import verify as sp_verify
from bittensor.wallets import CRYPTO_TYPE_NAMES, parse_crypto_type

from chain.wallets import Wallet
from node.tls import pinned
from protocol.messages import Submission

# The body's sha256, declared by the client so the btauth signature (whose payload holds that
# hash) can be checked from the headers alone, before the body is read (``verify_headers``).
HEADER_BODY_SHA256 = "X-Swarmtrain-Body-Sha256"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class NodeHttpError(RuntimeError):
    """A request could not be completed (connection, timeout, TLS)."""


class ResponseTooLarge(ValueError):
    """A server sent (or announced) more bytes than the reader's bound; not worth another try
    (a ``ValueError``: the answer is unusable, like a malformed one)."""


class PinMismatchError(NodeHttpError):
    """The server's certificate does not have the pinned fingerprint."""


class RequestRefused(Exception):
    """Server side: a request is refused with an HTTP status, a code and a reason."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(f"{status} {code}: {reason}")
        self.status = status
        self.code = code
        self.reason = reason
        self.header: Submission | None = None  # the message it refuses, once its signer is known (operators' views)

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.reason)


def error_response(status: int, code: str, reason: str) -> web.Response:
    """JSON body ``{"code", "reason"}`` (the ``ErrorResponse`` wire shape)."""
    return web.json_response({"code": code, "reason": reason}, status=status)


DEFAULT_MAX_RESPONSE_BYTES = 8 << 20  # any answer without a tighter bound of its own
_READ_CHUNK = 1 << 16


async def read_bounded(resp: aiohttp.ClientResponse, max_bytes: int,
                       on_chunk: Callable[[bytes], None] | None = None) -> bytes:
    """The response body, at most ``max_bytes`` (``ResponseTooLarge`` past it: the read stops
    at the bound, nothing more is buffered); ``on_chunk`` sees each chunk as it arrives
    (e.g. a hash computed while streaming)."""
    declared = resp.content_length
    if declared is not None and declared > max_bytes:
        raise ResponseTooLarge(f"{resp.method} {resp.url} announces {declared} bytes, over the "
                               f"{max_bytes}-byte limit for this answer")
    body = bytearray()
    async for chunk in resp.content.iter_chunked(_READ_CHUNK):
        if len(body) + len(chunk) > max_bytes:
            raise ResponseTooLarge(f"{resp.method} {resp.url} sent more than the {max_bytes}-byte "
                                   "limit for this answer; cut off there")
        if on_chunk is not None:
            on_chunk(chunk)
        body += chunk
    return bytes(body)


def is_transient(status: int) -> bool:
    """Worth another try: no answer (0), 425 (too early), 429 (busy) and 5xx; other 4xx are final."""
    return status in (0, 425, 429) or status >= 500


def parse_error(body: bytes) -> tuple[str, str]:
    """(code, reason) of an error body; ("unknown", text) if it is not the JSON shape."""
    try:
        data = json.loads(body)
        return str(data["code"]), str(data["reason"])
    except (ValueError, KeyError, TypeError):
        return "unknown", body[:200].decode("utf-8", "replace")


def request_target(request: web.Request) -> str:
    """The path plus query exactly as sent: what btauth/1 signs."""
    return request.rel_url.raw_path_qs if request.rel_url.raw_query_string else request.rel_url.raw_path


def _header(lowered: dict[str, str], name: str) -> str:
    value = lowered.get(name.lower())
    if value is None:
        raise RequestRefused(401, "auth_malformed", f"missing {name}")
    return value


def verify_headers(
    request: web.Request, self_hotkey: str, nonce_store: http_auth.NonceStore, *,
    max_age: float = http_auth.DEFAULT_MAX_AGE, allowed_skew: float = http_auth.DEFAULT_ALLOWED_SKEW,
) -> tuple[str, str]:
    """btauth/1 from the headers alone: (signer hotkey, declared body sha256 hex).

    The same checks and order as ``http_auth.verify`` (shape, receiver, freshness, signature,
    replay), with the body hash taken from ``HEADER_BODY_SHA256`` instead of the body, so an
    unsigned or forged request is refused before its body is read. The caller must then check
    ``sha256(body)`` against the declared hash (``check_body``). Raises ``RequestRefused`` (401).
    """
    lowered = {k.lower(): v for k, v in request.headers.items()}
    if lowered.get(http_auth.HEADER_VERSION.lower()) != http_auth.VERSION:
        raise RequestRefused(401, "auth_malformed", f"missing or unsupported {http_auth.HEADER_VERSION}")
    declared = _header(lowered, HEADER_BODY_SHA256).lower()
    if not _HEX64.match(declared):
        raise RequestRefused(401, "auth_malformed", f"{HEADER_BODY_SHA256} is not 64 hex digits")
    sender, nonce, crypto, signature = _auth_fields(lowered)
    if lowered.get(http_auth.HEADER_RECEIVER.lower()) != self_hotkey:
        raise RequestRefused(401, "auth_wrong_receiver", "request is not signed for this validator's hotkey")
    now = time.time_ns()
    if now - nonce > max_age * 1e9 or nonce - now > allowed_skew * 1e9:
        raise RequestRefused(401, "auth_stale", f"nonce is outside the {max_age:g}s freshness window")
    payload = _signed_payload(crypto, request, declared, nonce, sender, self_hotkey)
    try:
        valid = sp_verify(payload, signature, sender, crypto)
    except ValueError:
        raise RequestRefused(401, "auth_malformed", "invalid hotkey address or signature encoding") from None
    if not valid:
        raise RequestRefused(401, "auth_bad_signature", "signature does not verify against the claimed hotkey")
    if not nonce_store.check_and_store(sender, nonce):
        raise RequestRefused(401, "auth_replayed", "this nonce was already accepted from this hotkey")
    return sender, declared


def _auth_fields(lowered: dict[str, str]) -> tuple[str, int, int, bytes]:
    """(sender, nonce, crypto type, signature bytes) of the btauth headers; 401 if malformed."""
    sender = _header(lowered, http_auth.HEADER_HOTKEY)
    raw_nonce = _header(lowered, http_auth.HEADER_NONCE)
    if not raw_nonce.isdigit() or len(raw_nonce) > 20:
        raise RequestRefused(401, "auth_malformed", f"{http_auth.HEADER_NONCE} is not a decimal integer")
    try:
        crypto = parse_crypto_type(lowered.get(http_auth.HEADER_CRYPTO.lower(), "sr25519"))
        signature = bytes.fromhex(_header(lowered, http_auth.HEADER_SIGNATURE).removeprefix("0x"))
    except ValueError:
        raise RequestRefused(401, "auth_malformed", "unsupported crypto type or non-hex signature") from None
    return sender, int(raw_nonce), crypto, signature


def _signed_payload(crypto: int, request: web.Request, body_sha256: str, nonce: int, sender: str,
                    receiver: str) -> bytes:
    """The btauth/1 payload (``http_auth.build_payload``) with the declared body hash in its line."""
    lines = http_auth.build_payload(scheme=CRYPTO_TYPE_NAMES[crypto], method=request.method,
                                    path=request_target(request), body=b"", nonce_ns=nonce,
                                    sender_ss58=sender, receiver_ss58=receiver).split(b"\n")
    lines[4] = body_sha256.encode()  # the body-hash line of the payload
    return b"\n".join(lines)


def sign_headers(wallet: Wallet, method: str, path: str, body: bytes, receiver: str | None) -> dict[str, str]:
    """btauth/1 headers plus the declared body sha256 (what ``verify_headers`` needs)."""
    headers = http_auth.sign(wallet, method=method, path=path, body=body, receiver_ss58=receiver)
    headers[HEADER_BODY_SHA256] = hashlib.sha256(body).hexdigest()
    return headers


def check_body(body: bytes, declared_sha256: str) -> None:
    """The body is the one the signature covers; raises ``RequestRefused`` (401) if not."""
    if hashlib.sha256(body).hexdigest() != declared_sha256:
        raise RequestRefused(401, "auth_bad_signature", f"the body's sha256 is not the signed {HEADER_BODY_SHA256}")


class SignedClient:
    """An aiohttp session that signs every request with the wallet's hotkey.

    ``timeout`` bounds each request end to end (connect + send + read), in seconds.
    """

    def __init__(self, wallet: Wallet, *, timeout: float = 30.0) -> None:
        self.wallet = wallet
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SignedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def post(
        self,
        url: str,
        path: str,
        body: bytes,
        *,
        receiver_hotkey: str,
        pinned_fingerprint: str,
        content_type: str = "application/octet-stream",
    ) -> tuple[int, bytes]:
        """POST ``body`` to ``url + path``; returns (status, response body)."""
        return await self._request("POST", url, path, body, receiver_hotkey, pinned_fingerprint, content_type)

    async def get(
        self, url: str, path: str, *, receiver_hotkey: str | None, pinned_fingerprint: str,
        max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES, on_chunk: Callable[[bytes], None] | None = None,
    ) -> tuple[int, bytes]:
        """Signed GET of ``url + path``; returns (status, response body of at most ``max_bytes``,
        else ``ResponseTooLarge``); ``on_chunk`` sees the body as it streams in."""
        return await self._request("GET", url, path, b"", receiver_hotkey, pinned_fingerprint, None,
                                   max_bytes, on_chunk)

    async def _request(
        self,
        method: str,
        url: str,
        path: str,
        body: bytes,
        receiver_hotkey: str | None,
        fingerprint: str,
        content_type: str | None,
        max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        on_chunk: Callable[[bytes], None] | None = None,
    ) -> tuple[int, bytes]:
        headers = sign_headers(self.wallet, method, path, body, receiver_hotkey)
        if content_type:
            headers["Content-Type"] = content_type
        target = url.rstrip("/") + path
        try:
            async with self._get_session().request(
                method, target, data=body or None, headers=headers, ssl=pinned(fingerprint)
            ) as resp:
                return resp.status, await read_bounded(resp, max_bytes, on_chunk)
        except aiohttp.ServerFingerprintMismatch as exc:
            raise PinMismatchError(
                f"{target}: certificate sha256 {exc.got.hex()} != pinned {fingerprint}"
            ) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise NodeHttpError(f"{method} {target} failed: {type(exc).__name__}: {exc}") from exc
