"""The devnet's RPC wire: JSON over HTTP, one ``POST /rpc`` per call.

Request ``{"id": 7, "method": "query", "params": {...}}``; response
``{"id": 7, "result": ...}`` or ``{"id": 7, "error": {"code": "...", "message": "..."}}``.
Bytes travel as ``0x``-hex strings, tuples as lists, so every value is plain JSON.

An extrinsic is signed over :func:`signing_payload`, a canonical encoding of
(genesis hash, module, function, params, signer, nonce, era block), so a signature
is bound to this chain, this call and this nonce.

Example:
    >>> req = RpcRequest(id=1, method="block_number", params={})
    >>> RpcResponse(id=req.id, result=5).model_dump(exclude_none=True)
    {'id': 1, 'result': 5}
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

WIRE_VERSION = 1
MAX_BODY_BYTES = 1 << 20  # 1 MiB: the biggest extrinsic we accept is a weights vector
SIGNING_DOMAIN = b"swarmtrain-devnet/extrinsic/v1:"

MAX_JSON_DEPTH = 32  # nesting of arrays/objects in a request (no call needs more than a few)
MAX_INT = (1 << 63) - 1  # every integer must fit the state's SQLite INTEGER (signed 64-bit)
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")

METHODS = frozenset(
    {
        "chain_info",
        "block_number",
        "block_hash",
        "get_block",
        "query",
        "query_map",
        "query_batch",
        "map_has_entries",
        "runtime_call",
        "constant",
        "events",
        "account_next_index",
        "submit",
        "find_extrinsic",
    }
)


class WireError(ValueError):
    """A request body that is not acceptable JSON (syntax, nesting, integer range)."""


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or abs(int(text)) > MAX_INT:
        raise WireError(f"integer {text[:24]}{'…' if len(text) > 24 else ''} is outside the signed 64-bit range")
    return int(text)


def _reject_constant(name: str) -> float:
    raise WireError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise WireError(f"number {text[:24]} is out of range")
    return value


def json_depth(raw: bytes) -> int:
    """Deepest nesting of arrays/objects in ``raw`` (brackets inside strings do not count)."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub(b'""', raw)):
        depth += 1 if match.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


def parse_json(raw: bytes) -> Any:
    """A request body as JSON, or ``WireError``: at most ``MAX_JSON_DEPTH`` deep, every integer
    within ``MAX_INT``, no NaN/Infinity; the message never holds the body beyond a short prefix."""
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise WireError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_reject_constant)
    except WireError:
        raise
    except json.JSONDecodeError as error:
        raise WireError(f"body is not JSON: {error.msg} at offset {error.pos}") from None
    except (ValueError, RecursionError) as error:  # bad UTF-8
        raise WireError(f"body is not JSON: {type(error).__name__}") from None


class RpcErrorBody(BaseModel):
    """A refusal: ``code`` is a stable machine name, ``message`` says why."""

    model_config = ConfigDict(extra="forbid")
    code: str
    message: str


class RpcRequest(BaseModel):
    """One call to the devnet."""

    model_config = ConfigDict(extra="forbid")
    id: int = 0
    method: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)


class RpcResponse(BaseModel):
    """The answer to one :class:`RpcRequest`: exactly one of ``result`` / ``error``."""

    model_config = ConfigDict(extra="forbid")
    id: int = 0
    result: Any = None
    error: RpcErrorBody | None = None


class Extrinsic(BaseModel):
    """A signed call as it travels to the devnet.

    ``signature`` is 0x-hex over :func:`signing_payload` of the other fields.
    """

    model_config = ConfigDict(extra="forbid")
    module: str = Field(min_length=1, max_length=64)
    function: str = Field(min_length=1, max_length=96)
    params: dict[str, Any]
    signer: str = Field(min_length=40, max_length=64)
    nonce: int = Field(ge=0)
    era_block: int = Field(ge=0)
    genesis_hash: str = Field(min_length=66, max_length=66)
    crypto_type: int = Field(default=1, ge=0, le=1)
    signature: str = Field(min_length=2, max_length=200)
    wait: bool = True

    def payload(self) -> bytes:
        return signing_payload(
            genesis_hash=self.genesis_hash,
            module=self.module,
            function=self.function,
            params=self.params,
            signer=self.signer,
            nonce=self.nonce,
            era_block=self.era_block,
        )

    def hash(self) -> str:
        """0x-hex blake2b-256 of the payload and signature: the extrinsic's identity."""
        digest = hashlib.blake2b(self.payload() + self.signature.encode(), digest_size=32)
        return "0x" + digest.hexdigest()


def to_jsonable(value: Any) -> Any:
    """Bytes -> 0x-hex, tuples/sets -> lists, dict keys -> str; recursively."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(to_jsonable(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "value") and not callable(value.value):  # enum-like
        return to_jsonable(value.value)
    raise TypeError(f"cannot send a {type(value).__name__} to the devnet")


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, no spaces)."""
    return json.dumps(to_jsonable(value), sort_keys=True, separators=(",", ":")).encode()


def signing_payload(
    *,
    genesis_hash: str,
    module: str,
    function: str,
    params: dict[str, Any],
    signer: str,
    nonce: int,
    era_block: int,
) -> bytes:
    """The bytes a signer signs for one extrinsic."""
    body = {
        "genesis": genesis_hash,
        "module": module,
        "function": function,
        "params": params,
        "signer": signer,
        "nonce": nonce,
        "era": era_block,
    }
    return SIGNING_DOMAIN + canonical_json(body)
