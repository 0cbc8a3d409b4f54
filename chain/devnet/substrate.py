"""``DevnetSubstrate``: the SDK's ``Substrate`` protocol, forwarded to a devnet over HTTP.

Give it to the SDK and every read and intent runs against the devnet::

    client = bt.Client("ws://127.0.0.1:9946", substrate=DevnetSubstrate("devnet://127.0.0.1:9946"))

(the ``network`` argument only labels the client and keys its token-symbol cache).
Extrinsics are signed here, by the signer the SDK passes to :meth:`submit`, over
:func:`chain.devnet.wire.signing_payload`. Reads raise the SDK's ``ChainError`` for
refusals and ``RpcConnectionError`` when the devnet cannot be reached; writes never
raise for a chain-side failure but return a failed ``ExtrinsicResult``.

Not supported on the devnet (clear ``ChainError``): SCALE decoding, out-of-process
signing (``prepare`` / ``submit_signature``), multisig, MEV-shielded submission
(``mev_next_key`` is None, so ``bt.BurnedRegister`` via ``execute`` fails; submit
``bt.calls.SubtensorModule.burned_register`` with ``client.submit_call`` instead).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from bittensor._generated.calls import Call
from bittensor.balance import Balance
from bittensor.result import ChainError, ConnectionNotReady, ExtrinsicResult, RpcConnectionError

from chain.devnet.wire import Extrinsic, signing_payload, to_jsonable


def http_url(url: str) -> str:
    """``devnet://host:port`` (or ``http://...``) -> the devnet's ``http://host:port``."""
    if url.startswith("devnet://"):
        return "http://" + url.removeprefix("devnet://").rstrip("/")
    if url.startswith(("http://", "https://")):
        return url.rstrip("/")
    raise ValueError(f"not a devnet url: {url!r} (expected devnet://HOST:PORT)")


class DevnetRpcError(ChainError):
    """The devnet refused a request; ``name`` is its error code."""


class DevnetSubstrate:
    """A ``bittensor`` ``Substrate`` backed by a devnet process.

    Example:
        >>> sub = DevnetSubstrate("devnet://127.0.0.1:9946", timeout=10)
        >>> sub.url
        'http://127.0.0.1:9946'
    """

    def __init__(self, url: str, *, timeout: float = 30.0):
        self.url = http_url(url)
        self.timeout = timeout
        self.token_symbols: dict[int, str] = {}
        self._session: aiohttp.ClientSession | None = None
        self._info: dict[str, Any] = {}
        self._ids = 0
        # one submission at a time per signer: the nonce read and its use must not interleave
        self._signer_locks: dict[str, asyncio.Lock] = {}

    def balance(self, rao: int, netuid: int = 0) -> Balance:
        symbol = self.token_symbols.get(netuid) if netuid else None
        return Balance(int(rao), netuid, symbol)

    # Lifecycle ----------------------------------------------------------------

    async def connect(self) -> None:
        if self._session is not None:
            return
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            self._info = await self._rpc("chain_info", {})
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> DevnetSubstrate:
        await self.connect()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _rpc(self, method: str, params: dict[str, Any], *, timeout: float | None = None
                   ) -> Any:
        if self._session is None:
            raise ConnectionNotReady("DevnetSubstrate is not connected; call connect() first")
        self._ids += 1
        body = {"id": self._ids, "method": method, "params": to_jsonable(params)}
        limit = aiohttp.ClientTimeout(total=timeout or self.timeout)
        try:
            async with self._session.post(self.url + "/rpc", json=body, timeout=limit) as resp:
                answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            detail = str(error) or type(error).__name__
            raise RpcConnectionError(f"devnet at {self.url} unreachable: {detail}") from error
        except json.JSONDecodeError as error:
            raise RpcConnectionError(f"devnet at {self.url} sent invalid JSON: {error}") from error
        if not isinstance(answer, dict):
            raise RpcConnectionError(f"devnet at {self.url} sent a non-object answer")
        if answer.get("error"):
            err = answer["error"]
            raise DevnetRpcError(str(err.get("message")), str(err.get("code")))
        return answer.get("result")

    # Reads --------------------------------------------------------------------

    async def block_hash(self, block: int | None = None) -> str:
        return await self._rpc("block_hash", {"block": block})

    async def block_number(self) -> int:
        return int(await self._rpc("block_number", {}))

    async def finalized_block_number(self) -> int:
        return await self.block_number()  # instant finality

    async def block_time(self) -> float:
        if not self._info:
            self._info = await self._rpc("chain_info", {})
        return float(self._info["block_time"])

    async def spec_version(self) -> int:
        return int(self._info.get("spec_version", 1))

    async def get_block(self, block_number: int | None = None, block_hash: str | None = None
                        ) -> dict | None:
        return await self._rpc("get_block", {"block_number": block_number,
                                             "block_hash": block_hash})

    async def query(self, module: str, storage_function: str, params: list | None = None,
                    block_hash: str | None = None) -> Any:
        return await self._rpc("query", {"module": module, "storage_function": storage_function,
                                         "params": params or [], "block_hash": block_hash})

    async def map_has_entries(self, module: str, storage_function: str, params: list,
                              block_hash: str | None = None) -> bool:
        return bool(await self._rpc("map_has_entries", {
            "module": module, "storage_function": storage_function, "params": params or [],
            "block_hash": block_hash}))

    async def query_map(self, module: str, storage_function: str, params: list | None = None,
                        block_hash: str | None = None) -> list[tuple[Any, Any]]:
        rows = await self._rpc("query_map", {
            "module": module, "storage_function": storage_function, "params": params or [],
            "block_hash": block_hash})
        return [(key, value) for key, value in rows]

    async def query_batch(self, module: str, storage_function: str, param_sets: list[list],
                          block_hash: str | None = None) -> list[Any]:
        if not param_sets:
            return []
        return await self._rpc("query_batch", {
            "module": module, "storage_function": storage_function,
            "param_sets": [list(p) for p in param_sets], "block_hash": block_hash})

    async def runtime_call(self, api: str, method: str, params: list,
                           block_hash: str | None = None) -> Any:
        return await self._rpc("runtime_call", {"api": api, "method": method,
                                                "params": list(params), "block_hash": block_hash})

    async def constant(self, module: str, name: str) -> Any:
        return await self._rpc("constant", {"module": module, "name": name})

    async def decode_scale(self, type_string: str, data: Any) -> Any:
        raise ChainError("the devnet has no SCALE types; decode_scale is not supported")

    async def blocks(self, *, finalized: bool = False) -> AsyncIterator[dict]:
        """New block headers, polled twice per block time; the caller breaks out."""
        period = max(await self.block_time() / 2, 0.05)
        seen = await self.block_number()
        while True:
            await asyncio.sleep(period)
            head = await self.block_number()
            for number in range(seen + 1, head + 1):
                block = await self.get_block(block_number=number)
                if block is not None:
                    yield {"header": block["header"]}
            seen = max(seen, head)

    async def events(self, block_hash: str | None = None) -> list[dict]:
        return await self._rpc("events", {"block_hash": block_hash})

    # Calls and fees -------------------------------------------------------------

    async def compose(self, call: Any) -> Call:
        """The generated ``Call`` (module, function, params) is already what the devnet takes."""
        module, function, params = call
        return Call(str(module), str(function), dict(params))

    async def estimate_fee(self, call: Any, keypair: Any) -> Balance:
        return Balance.from_rao(0)  # the devnet charges no transaction fees

    async def estimate_weight(self, call: Any, keypair: Any) -> dict:
        return {"ref_time": 0, "proof_size": 0}

    async def account_next_index(self, address: str) -> int:
        return int(await self._rpc("account_next_index", {"address": address}))

    # Writes -------------------------------------------------------------------

    async def mev_next_key(self) -> bytes | None:
        return None  # no MevShield pallet on the devnet

    async def sign_extrinsic(self, call: Any, keypair: Any, *, nonce: int, period: int
                             ) -> tuple[bytes, str]:
        ext = await self._signed(await self.compose(call), keypair, nonce)
        return ext.model_dump_json().encode(), ext.hash()

    async def _signed(self, call: Call, keypair: Any, nonce: int | None, wait: bool = True
                      ) -> Extrinsic:
        if not self._info:
            self._info = await self._rpc("chain_info", {})
        if nonce is None:
            nonce = await self.account_next_index(keypair.ss58_address)
        fields = {
            "genesis_hash": self._info["genesis_hash"], "module": call.module,
            "function": call.function, "params": to_jsonable(call.params),
            "signer": keypair.ss58_address, "nonce": nonce,
            "era_block": await self.block_number(),
        }
        signature = keypair.sign(signing_payload(**fields))
        if inspect.isawaitable(signature):
            signature = await signature
        return Extrinsic(**fields, signature="0x" + bytes(signature).hex(), wait=wait,
                         crypto_type=int(getattr(keypair, "crypto_type", 1)))

    async def find_extrinsic(self, extrinsic_hash: str, block_hash: str
                             ) -> ExtrinsicResult | None:
        found = await self._rpc("find_extrinsic", {"hash": extrinsic_hash})
        if found is None or found.get("block_hash") != block_hash:
            return None
        return _result(found)

    async def prepare(self, call: Any, **kwargs: Any) -> Any:
        raise ChainError("out-of-process signing (prepare) is not supported on the devnet")

    async def submit_signature(self, unsigned: Any, signature: Any, **kwargs: Any
                               ) -> ExtrinsicResult:
        raise ChainError("out-of-process signing (submit_signature) is not supported")

    async def submit(self, call: Any, keypair: Any, *, nonce: int | None = None,
                     period: int | None = None, wait_for_inclusion: bool = True,
                     wait_for_finalization: bool = True) -> ExtrinsicResult:
        wait = wait_for_inclusion or wait_for_finalization
        lock = self._signer_locks.setdefault(keypair.ss58_address, asyncio.Lock())
        async with lock:
            try:
                ext = await self._signed(await self.compose(call), keypair, nonce, wait)
            except (TypeError, ValueError) as error:
                raise ChainError(f"cannot build the extrinsic: {error}") from error
            return await self._send(ext)

    async def submit_signed(self, extrinsic: Any, keypair: Any, *,
                            wait_for_inclusion: bool = True,
                            wait_for_finalization: bool = True) -> ExtrinsicResult:
        """Submit the bytes :meth:`sign_extrinsic` produced."""
        try:
            ext = Extrinsic.model_validate_json(bytes(extrinsic))
        except (TypeError, ValueError) as error:
            raise ChainError(f"not a devnet extrinsic: {error}") from error
        return await self._send(ext)

    async def _send(self, ext: Extrinsic) -> ExtrinsicResult:
        wait_s = max(self.timeout, 60 * float(self._info.get("block_time", 1.0)))
        try:
            answer = await self._rpc("submit", {"extrinsic": ext.model_dump()}, timeout=wait_s)
        except DevnetRpcError as refused:  # refused by the pool: nothing was included
            return ExtrinsicResult(success=False, message=refused.message, error=refused)
        if not ext.wait:
            return ExtrinsicResult(success=True, message="Submitted (not waiting).")
        return _result(answer)

    # Multisig -----------------------------------------------------------------

    def multisig_account(self, signatories: list[str], threshold: int) -> Any:
        raise ChainError("multisig is not supported on the devnet")

    async def submit_multisig(self, call: Any, keypair: Any, multisig_account: Any,
                              **kwargs: Any) -> ExtrinsicResult:
        raise ChainError("multisig is not supported on the devnet")


def _result(included: dict[str, Any]) -> ExtrinsicResult:
    """An included extrinsic's outcome as the SDK's ``ExtrinsicResult``."""
    extrinsic_id = f"{included['block_number']}-{int(included['extrinsic_idx']):04d}"
    if included.get("success"):
        return ExtrinsicResult(
            success=True, message="Success", block_hash=included["block_hash"],
            extrinsic_id=extrinsic_id, fee=Balance.from_rao(0),
            events=list(included.get("events") or []),
        )
    error = included.get("error") or {}
    text = str(error.get("docs") or error.get("name") or "extrinsic failed")
    return ExtrinsicResult(
        success=False, message=text, block_hash=included["block_hash"],
        extrinsic_id=extrinsic_id, events=list(included.get("events") or []),
        error=ChainError(text, error.get("name")),
    )
