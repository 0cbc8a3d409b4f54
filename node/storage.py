"""Where aggregates and checkpoints live: on the validator itself, or in an S3-compatible store.

``SubnetConfig.storage`` says which. With ``"validator"`` (the default) every node fetches
them from the lead validator's HTTPS routes, so the lead's upload grows with the number of
nodes. With ``"s3"`` each validator writes what it publishes once to its bucket (AWS S3,
Cloudflare R2, MinIO, ...) and publishes the bucket's *read* location and credentials in
its on-chain commitment (``StoreLocation``, the ``st`` field of ``node.commitment``); nodes
read from there. Hashes are checked exactly as over HTTPS (checkpoint sha256 and size
against the manifest, model hash; the aggregate's ``next_model_hash`` when applied).

Object layout under the location's prefix (it mirrors the validator's GET routes)::

    aggregates/00000007.bin          Aggregate(7) envelope        (GET /aggregate/7)
    checkpoints/00000005.safetensors θ_5 bytes (ModelState)        (GET /checkpoint/5)
    checkpoints/00000005.json        its CheckpointManifest JSON
    checkpoints/latest.json          the newest manifest, written last (GET /checkpoint/latest)

Requests use path-style addressing (``endpoint/bucket/key``), which S3, R2, MinIO and a
local test server all accept.

Example:
    >>> loc = StoreLocation(endpoint="http://127.0.0.1:9000", bucket="swarm", prefix="sn1")
    >>> store = ObjectStore(loc, key_id="writer", secret="...")
    >>> await store.put(aggregate_key(loc, 7), envelope)
    >>> await StoreGetter(loc).get("", "/aggregate/7")     # (200, envelope)
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from node.signed_http import DEFAULT_MAX_RESPONSE_BYTES, NodeHttpError, ResponseTooLarge

StorageKind = Literal["validator", "s3"]
MULTIPART_PART_BYTES = 64 * 1024 * 1024  # objects above this go up in parts (S3 caps one PUT at 5 GB)
READ_CHUNK = 1 << 16  # a bounded read takes the object's body this much at a time
_ROUTE_AGGREGATE = re.compile(r"^/aggregate/([0-9]{1,18})$")
_ROUTE_CHECKPOINT = re.compile(r"^/checkpoint/([0-9]{1,18})$")


class StorageError(NodeHttpError):
    """The object store could not be reached or refused a request (transient for readers)."""


class StoreLocation(BaseModel):
    """Where a validator's published objects can be read, as its commitment carries it.

    Short JSON names (``e``, ``b``, ...) keep the commitment within the chain's 384 bytes;
    ``key_id``/``secret`` are *read-only* credentials (absent: anonymous reads of a public
    bucket).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    endpoint: str = Field(alias="e", pattern=r"^https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~\-/]*)?$",
                          max_length=120, description="S3 API endpoint URL")
    bucket: str = Field(alias="b", pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
    prefix: str | None = Field(None, alias="p", pattern=r"^[A-Za-z0-9._\-]+(/[A-Za-z0-9._\-]+)*$",
                               max_length=64, description="key prefix (no leading/trailing slash)")
    region: str | None = Field(None, alias="r", pattern=r"^[a-z0-9\-]{1,32}$",
                               description="signing region (default us-east-1; R2: auto)")
    key_id: str | None = Field(None, alias="k", pattern=r"^[A-Za-z0-9+/=._\-]{1,128}$")
    secret: str | None = Field(None, alias="s", pattern=r"^[A-Za-z0-9+/=._\-]{1,128}$")

    def key(self, name: str) -> str:
        """The object key of ``name`` under this location's prefix."""
        return f"{self.prefix}/{name}" if self.prefix else name

    @property
    def signing_region(self) -> str:
        return self.region or "us-east-1"


def aggregate_name(window: int) -> str:
    return f"aggregates/{window:08d}.bin"


def checkpoint_name(window: int) -> str:
    return f"checkpoints/{window:08d}.safetensors"


def manifest_name(window: int) -> str:
    return f"checkpoints/{window:08d}.json"


LATEST_MANIFEST = "checkpoints/latest.json"


def aggregate_key(loc: StoreLocation, window: int) -> str:
    return loc.key(aggregate_name(window))


def route_object(path: str) -> str | None:
    """The object name that answers a validator GET route, or None for other routes."""
    if path == "/checkpoint/latest":
        return LATEST_MANIFEST
    if match := _ROUTE_AGGREGATE.match(path):
        return aggregate_name(int(match.group(1)))
    if match := _ROUTE_CHECKPOINT.match(path):
        return checkpoint_name(int(match.group(1)))
    return None


def _client_error_code(exc: Exception) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def _is_missing(exc: Exception) -> bool:
    code, status = _client_error_code(exc)
    return code in ("NoSuchKey", "404", "NotFound")  # not NoSuchBucket: a misconfiguration


class ObjectStore:
    """A small async S3 client (aiobotocore): put, get, exists, list_keys, delete.

    ``key_id``/``secret`` None: botocore's usual credential chain for writers
    (``AWS_ACCESS_KEY_ID``, ``~/.aws``, ...); ``anonymous``: unsigned requests (public bucket).
    Every failure is a ``StorageError`` naming the operation, bucket and key.
    """

    def __init__(self, location: StoreLocation, *, key_id: str | None = None, secret: str | None = None,
                 anonymous: bool = False, timeout_s: float = 60.0) -> None:
        self.location = location
        self._key_id, self._secret, self._anonymous = key_id, secret, anonymous
        self.timeout_s = timeout_s
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._lock = asyncio.Lock()
        self.bytes_in = 0  # bytes read by this client (downloads)
        self.bytes_out = 0  # bytes written by this client (uploads)

    async def _get_client(self) -> Any:
        async with self._lock:
            if self._client is None:
                self._client = await self._open()
            return self._client

    async def _open(self) -> Any:
        try:
            from aiobotocore.config import AioConfig
            from aiobotocore.session import get_session
            from botocore import UNSIGNED
        except ImportError as exc:  # a dependency of the package; absent only in a broken install
            raise StorageError("the S3 backend needs aiobotocore: pip install aiobotocore") from exc
        config = AioConfig(
            connect_timeout=min(10.0, self.timeout_s), read_timeout=self.timeout_s,
            retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": "path"},
            **({"signature_version": UNSIGNED} if self._anonymous else {}),
        )
        creds = {} if self._anonymous or self._key_id is None else {
            "aws_access_key_id": self._key_id, "aws_secret_access_key": self._secret or ""}
        self._stack = contextlib.AsyncExitStack()
        client = get_session().create_client(
            "s3", endpoint_url=self.location.endpoint, region_name=self.location.signing_region,
            config=config, **creds)
        return await self._stack.enter_async_context(client)

    async def close(self) -> None:
        if self._stack is not None:
            stack, self._stack, self._client = self._stack, None, None
            await stack.aclose()

    def _fail(self, op: str, key: str, exc: Exception) -> StorageError:
        code, status = _client_error_code(exc)
        detail = f"{code or type(exc).__name__} {status or ''}".strip()
        return StorageError(f"S3 {op} {self.location.endpoint}/{self.location.bucket}/{key} failed: {detail}: {exc}")

    async def _call(self, op: str, key: str, **kwargs: Any) -> Any:
        client = await self._get_client()
        try:
            return await asyncio.wait_for(getattr(client, op)(Bucket=self.location.bucket, **kwargs),
                                          self.timeout_s * 2)
        except Exception as exc:  # noqa: BLE001 - botocore raises many types; all become StorageError
            if _is_missing(exc):
                raise KeyError(key) from exc
            raise self._fail(op, key, exc) from exc

    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` at ``key`` (whole or in parts); readers see the old object or the new one."""
        if len(data) > MULTIPART_PART_BYTES:
            await self._put_multipart(key, data)
        else:
            await self._call("put_object", key, Key=key, Body=data)
        self.bytes_out += len(data)

    async def _put_multipart(self, key: str, data: bytes) -> None:
        upload = await self._call("create_multipart_upload", key, Key=key)
        upload_id, parts = upload["UploadId"], []
        try:
            for number, start in enumerate(range(0, len(data), MULTIPART_PART_BYTES), start=1):
                chunk = data[start : start + MULTIPART_PART_BYTES]
                part = await self._call("upload_part", key, Key=key, UploadId=upload_id,
                                        PartNumber=number, Body=chunk)
                parts.append({"ETag": part["ETag"], "PartNumber": number})
            await self._call("complete_multipart_upload", key, Key=key, UploadId=upload_id,
                             MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(Exception):
                await self._call("abort_multipart_upload", key, Key=key, UploadId=upload_id)
            raise

    async def get(self, key: str, *, max_bytes: int | None = None,
                  on_chunk: Callable[[bytes], None] | None = None) -> bytes | None:
        """The object's bytes, or None when it does not exist. ``max_bytes``: a larger object is
        a ``ResponseTooLarge`` (its announced size is checked before the body is read, and the
        read stops at the bound), as an HTTPS answer past ``node.signed_http.read_bounded``'s
        bound is. ``on_chunk`` sees each chunk as it arrives (a hash while streaming)."""
        try:
            response = await self._call("get_object", key, Key=key)
        except KeyError:
            return None
        where = f"S3 object {self.location.endpoint}/{self.location.bucket}/{key}"
        declared = response.get("ContentLength")
        try:
            async with response["Body"] as stream:
                if max_bytes is not None and isinstance(declared, int) and declared > max_bytes:
                    raise ResponseTooLarge(f"{where} has {declared} bytes, over the {max_bytes}-byte limit "
                                           "for this answer")
                data = await asyncio.wait_for(self._read(stream, where, max_bytes, on_chunk), self.timeout_s * 4)
        except ResponseTooLarge:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken stream is a transient storage failure
            raise self._fail("get_object", key, exc) from exc
        return data

    async def _read(self, stream: Any, where: str, max_bytes: int | None,
                    on_chunk: Callable[[bytes], None] | None) -> bytes:
        """The body chunk by chunk, cut off past ``max_bytes`` (a server may send more than it announced)."""
        body = bytearray()
        while chunk := await stream.read(READ_CHUNK):
            if max_bytes is not None and len(body) + len(chunk) > max_bytes:
                raise ResponseTooLarge(f"{where} sent more than the {max_bytes}-byte limit for this answer; "
                                       "cut off there")
            if on_chunk is not None:
                on_chunk(bytes(chunk))
            body += chunk
            self.bytes_in += len(chunk)
        return bytes(body)

    async def exists(self, key: str) -> bool:
        try:
            await self._call("head_object", key, Key=key)
        except KeyError:
            return False
        return True

    async def list_keys(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (at most 1000: the retention sets stay far below that)."""
        response = await self._call("list_objects_v2", prefix, Prefix=prefix)
        return [str(item["Key"]) for item in response.get("Contents", [])]

    async def delete(self, keys: list[str]) -> None:
        """Delete ``keys`` (missing ones are fine)."""
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            if batch:
                await self._call("delete_objects", batch[0]["Key"], Delete={"Objects": batch, "Quiet": True})

    async def create_bucket(self) -> None:
        """Create the bucket if it does not exist (local test servers; real buckets are made by their owner)."""
        try:
            await self._call("create_bucket", "")
        except StorageError as exc:
            if "BucketAlreadyOwnedByYou" not in str(exc) and "BucketAlreadyExists" not in str(exc):
                raise


class StoreGetter:
    """Answers the validator GET routes a ``node.fetch.ValidatorLink`` asks for from a
    published bucket: ``(200, bytes)`` or ``(404, b"")``. Same interface as
    ``SignedClient.get``, so the links' checks run unchanged, the response bounds included
    (``max_bytes``: ``ResponseTooLarge`` past it; ``on_chunk``: the streamed hash)."""

    def __init__(self, location: StoreLocation, *, timeout_s: float = 60.0) -> None:
        anonymous = location.key_id is None
        self.store = ObjectStore(location, key_id=location.key_id, secret=location.secret,
                                 anonymous=anonymous, timeout_s=timeout_s)

    @property
    def location(self) -> StoreLocation:
        return self.store.location

    async def get(self, url: str, path: str, *, receiver_hotkey: str | None = None,
                  pinned_fingerprint: str = "", max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                  on_chunk: Callable[[bytes], None] | None = None) -> tuple[int, bytes]:
        name = route_object(path)
        if name is None:
            return 404, b""
        data = await self.store.get(self.location.key(name), max_bytes=max_bytes, on_chunk=on_chunk)
        return (404, b"") if data is None else (200, data)

    async def close(self) -> None:
        await self.store.close()


def reader_for(storage: str, location: StoreLocation | None, *, timeout_s: float = 60.0) -> StoreGetter | None:
    """The getter for a validator's published objects: None when the subnet keeps them on
    the validator (read over HTTPS); a ``StoreGetter`` for an ``s3`` subnet. A ``StorageError``
    when the subnet stores in S3 but the validator published no location."""
    if storage != "s3":
        return None
    if location is None:
        raise StorageError("the subnet keeps aggregates and checkpoints in S3, but the lead validator's "
                           "commitment names no object store (it must run with --s3-endpoint/--s3-bucket)")
    return StoreGetter(location, timeout_s=timeout_s)
