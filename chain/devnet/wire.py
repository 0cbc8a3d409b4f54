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
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

WIRE_VERSION = 1
MAX_BODY_BYTES = 1 << 20  # 1 MiB: the biggest extrinsic we accept is a weights vector
SIGNING_DOMAIN = b"swarmtrain-devnet/extrinsic/v1:"

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
