"""Wire messages between nodes: strict, versioned, size-bounded pydantic models + a binary envelope.

JSON bodies (``ErrorResponse``, ``SubmitAccepted``, ``CheckpointManifest``) are parsed with
``parse_message``. Bodies that carry bytes (a ``Submission`` or an ``Aggregate`` with its
codec payload) use the envelope, so payloads need no base64::

    u32 big-endian header length | header JSON (utf-8) | payload bytes

The header names the payload's length and sha256; ``unpack_envelope`` checks both. Every
failure to parse raises ``MessageError`` (a ``ValueError``) with a readable reason.

Example:
    >>> hdr = SubmitAccepted(window=3, uid=1, payload_sha256="0" * 64)
    >>> parse_message(hdr.model_dump_json(), SubmitAccepted) == hdr
    True
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from typing import Annotated, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from protocol.subnet import PROTOCOL_VERSION

MAX_PAYLOAD_BYTES = 64 * 1024 * 1024  # one update or aggregate
MAX_CHECKPOINT_BYTES = 64 * 1024**3  # a full checkpoint file (fetched separately, not enveloped)
MAX_HEADER_BYTES = 16 * 1024
MAX_CONTRIBUTORS = 1024  # SubnetConfig.top_g is at most this
_LEN = struct.Struct(">I")

Hex64 = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$", description="sha256 hex digest")]
SS58 = Annotated[StrictStr, Field(pattern=r"^[1-9A-HJ-NP-Za-km-z]{40,50}$", description="ss58 address")]
NetUid = Annotated[StrictInt, Field(ge=0, le=65_535)]
Uid = Annotated[StrictInt, Field(ge=0, le=65_535)]
Window = Annotated[StrictInt, Field(ge=0, lt=2**63)]
PayloadLen = Annotated[StrictInt, Field(ge=0, le=MAX_PAYLOAD_BYTES)]
Timestamp = Annotated[StrictFloat, Field(ge=0, le=1e11, allow_inf_nan=False, description="unix seconds")]
Version = Literal[PROTOCOL_VERSION]  # type: ignore[valid-type]

M = TypeVar("M", bound=BaseModel)


class MessageError(ValueError):
    """A message or envelope is malformed, oversized, of the wrong schema or fails its checks."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol_version: Version = PROTOCOL_VERSION


class Submission(_Message):
    """A miner's update for one window (envelope header; the payload is the codec bytes).

    Example:
        >>> Submission(netuid=1, window=7, uid=3, hotkey="5" + "F" * 47, base_model_hash="a" * 64,
        ...            data_digest="b" * 64, payload_sha256="c" * 64, payload_len=10, sent_at=0.0).uid
        3
    """

    netuid: NetUid
    window: Window
    uid: Uid
    hotkey: SS58
    base_model_hash: Hex64 = Field(description="hash of θ_window the miner started from")
    data_digest: Hex64 = Field(description="data_digest() of the sample indices trained on")
    payload_sha256: Hex64
    payload_len: PayloadLen
    criteria_hash: Hex64 | None = None
    sent_at: Timestamp


class Contributor(BaseModel):
    """One miner whose update entered an aggregate, with its weight in the mean."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uid: Uid
    hotkey: SS58
    weight: Annotated[StrictFloat, Field(ge=0, le=1, allow_inf_nan=False)]


class Aggregate(_Message):
    """The lead validator's aggregate of window ``window`` (envelope header).

    Applying it to θ_window with the outer step gives the model with ``next_model_hash``.

    Example:
        >>> agg = Aggregate(netuid=1, window=7, contributors=[], base_model_hash="a" * 64,
        ...                 next_model_hash="a" * 64, payload_sha256=hashlib.sha256(b"").hexdigest(),
        ...                 payload_len=0, outer_lr=1.0)
        >>> agg.contributors
        ()
    """

    netuid: NetUid
    window: Window
    contributors: tuple[Contributor, ...] = Field(max_length=MAX_CONTRIBUTORS)
    base_model_hash: Hex64
    next_model_hash: Hex64
    payload_sha256: Hex64
    payload_len: PayloadLen
    outer_lr: Annotated[StrictFloat, Field(gt=0, le=10, allow_inf_nan=False)]


ConfigValue = StrictBool | StrictInt | StrictFloat | Annotated[StrictStr, Field(max_length=256)] | None


class CheckpointManifest(_Message):
    """Describes the checkpoint file of θ_window (the model after aggregates ``< window``).

    Example:
        >>> m = CheckpointManifest(netuid=1, window=5, model_hash="a" * 64, config={"dim": 64},
        ...     subnet_config_hash="b" * 64, file_sha256="c" * 64, file_size=1024, created_at=0.0)
        >>> m.config["dim"]
        64
    """

    netuid: NetUid
    window: Window
    model_hash: Hex64
    config: dict[Annotated[StrictStr, Field(max_length=64)], ConfigValue] = Field(max_length=64)
    subnet_config_hash: Hex64
    file_sha256: Hex64
    file_size: Annotated[StrictInt, Field(ge=0, le=MAX_CHECKPOINT_BYTES)]
    created_at: Timestamp


class ErrorResponse(_Message):
    """Body of every 4xx/5xx answer: a stable machine code and a human reason.

    Example:
        >>> ErrorResponse(code="wrong_window", reason="window 4 is closed").code
        'wrong_window'
    """

    code: Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    reason: Annotated[StrictStr, Field(min_length=1, max_length=1024)]
    detail: Annotated[StrictStr, Field(max_length=4096)] | None = None


class SubmitAccepted(_Message):
    """Body of a 200 answer to ``POST /submit``."""

    accepted: Literal[True] = True
    window: Window
    uid: Uid
    payload_sha256: Hex64


def data_digest(indices: Iterable[int]) -> str:
    """sha256 hex of sample indices in order, each as a little-endian u64 (``Submission.data_digest``)."""
    h = hashlib.sha256()
    for i in indices:
        if not 0 <= int(i) < 2**64:
            raise MessageError(f"sample index {i} does not fit an unsigned 64-bit integer")
        h.update(int(i).to_bytes(8, "little"))
    return h.hexdigest()


def parse_message(raw: bytes | str, model_type: type[M], max_bytes: int = MAX_HEADER_BYTES) -> M:
    """Parse a JSON body into ``model_type``; ``MessageError`` on anything wrong."""
    if not isinstance(raw, bytes | bytearray | memoryview | str):
        raise MessageError(f"{model_type.__name__}: expected bytes or str, got {type(raw).__name__}")
    if len(raw) > max_bytes:
        raise MessageError(f"{model_type.__name__} body of {len(raw)} bytes exceeds the limit of {max_bytes}")
    try:
        return model_type.model_validate_json(raw)
    except ValidationError as e:
        raise MessageError(f"invalid {model_type.__name__}: {_summarize(e)}") from e


def pack_envelope(header: BaseModel, payload: bytes) -> bytes:
    """``u32 len | header JSON | payload``; the header's payload_len/payload_sha256 must match."""
    _check_payload(header, payload)
    head = header.model_dump_json().encode("utf-8")
    return _LEN.pack(len(head)) + head + bytes(payload)


def unpack_envelope(
    body: bytes,
    header_type: type[M],
    max_header_bytes: int = MAX_HEADER_BYTES,
    max_payload_bytes: int = MAX_PAYLOAD_BYTES,
) -> tuple[M, bytes]:
    """Split and verify an envelope: sizes, JSON schema, payload length and sha256."""
    name = header_type.__name__
    if not isinstance(body, bytes | bytearray | memoryview):
        raise MessageError(f"{name} envelope must be bytes, got {type(body).__name__}")
    view = memoryview(body).cast("B")
    if len(view) < _LEN.size:
        raise MessageError(f"{name} envelope of {len(view)} bytes is shorter than its length prefix")
    (head_len,) = _LEN.unpack(view[: _LEN.size])
    if head_len > max_header_bytes:
        raise MessageError(f"{name} header of {head_len} bytes exceeds the limit of {max_header_bytes}")
    if _LEN.size + head_len > len(view):
        raise MessageError(f"{name} envelope truncated: header needs {head_len} bytes, {len(view) - _LEN.size} present")
    payload_len = len(view) - _LEN.size - head_len
    if payload_len > max_payload_bytes:
        raise MessageError(f"{name} payload of {payload_len} bytes exceeds the limit of {max_payload_bytes}")
    header = parse_message(bytes(view[_LEN.size : _LEN.size + head_len]), header_type, max_header_bytes)
    payload = bytes(view[_LEN.size + head_len :])
    _check_payload(header, payload)
    return header, payload


def _check_payload(header: BaseModel, payload: bytes) -> None:
    """The header's payload_len and payload_sha256 must describe ``payload``."""
    name = type(header).__name__
    expected_len = getattr(header, "payload_len", None)
    expected_sha = getattr(header, "payload_sha256", None)
    if expected_len is None or expected_sha is None:
        raise MessageError(f"{name} cannot head an envelope: it has no payload_len/payload_sha256")
    if len(payload) != expected_len:
        raise MessageError(f"{name} says payload_len={expected_len} but the payload has {len(payload)} bytes")
    actual = hashlib.sha256(payload).hexdigest()
    if actual != expected_sha:
        raise MessageError(f"{name} payload sha256 {actual} does not match the header's {expected_sha}")


def _summarize(err: ValidationError, limit: int = 3) -> str:
    """'field: message; ...' for the first few errors (no pydantic traceback for the peer)."""
    parts = []
    for item in err.errors(include_url=False)[:limit]:
        loc = ".".join(str(p) for p in item["loc"]) or "<body>"
        parts.append(f"{loc}: {item['msg']}")
    more = err.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
