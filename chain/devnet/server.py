"""The devnet process: an aiohttp JSON-RPC endpoint plus a block-producer task.

``POST /rpc`` takes a :class:`chain.devnet.wire.RpcRequest`; ``GET /health`` answers
``{"block": N, "genesis_hash": ...}``. Malformed requests get HTTP 400 (413 when over
:data:`MAX_BODY_BYTES`) with a JSON error; chain-level refusals (bad signature, stale
nonce, unknown storage item) get HTTP 200 with ``{"error": {"code", "message"}}``.
Blocks are produced every ``block_time`` seconds by one asyncio task; a submitted
extrinsic is answered once the block that includes it is stored.

Example:
    >>> asyncio.run(serve(Devnet.open(dir_, cfg), host="127.0.0.1", port=9946))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from chain.devnet.blockchain import BlockReport, Devnet, PoolRejection
from chain.devnet.params import EXISTENTIAL_DEPOSIT_RAO
from chain.devnet.storage_queries import ReadError
from chain.devnet.wire import (
    MAX_BODY_BYTES,
    METHODS,
    WIRE_VERSION,
    Extrinsic,
    RpcRequest,
    WireError,
    parse_json,
)
from chain.http_server import GuardedServer, ServerLimits, json_errors

log = logging.getLogger("swarmtrain.devnet")  # under the project root: one logging set-up
SUBMIT_WAIT_BLOCKS = 50  # a submitter waits at most this many block times for inclusion

BlockCallback = Callable[[BlockReport], None]


class RpcFailure(Exception):
    """An RPC answered with an error body; ``status`` is the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 200):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _param(params: dict[str, Any], name: str, kind: type | tuple, default: Any = ...) -> Any:
    if name not in params:
        if default is ...:
            raise RpcFailure("InvalidParams", f"missing param {name!r}", 400)
        return default
    value = params[name]
    if value is None and default is None:
        return None
    if isinstance(value, bool) and kind is int or not isinstance(value, kind):
        raise RpcFailure("InvalidParams", f"param {name!r} has the wrong type", 400)
    return value


def error_body(status: int, code: str, message: str) -> web.Response:
    """The devnet's refusal shape, ``{"id": 0, "error": {"code", "message"}}`` (aiohttp's own too)."""
    return web.json_response({"id": 0, "error": {"code": code, "message": message}}, status=status)


class DevnetServer:
    """Serves one :class:`Devnet` over HTTP and drives its blocks."""

    def __init__(self, devnet: Devnet, *, on_block: BlockCallback | None = None):
        self.devnet = devnet
        self.on_block = on_block
        self.waiters: dict[str, asyncio.Future] = {}
        self._producer: asyncio.Task | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "chain_info": self._chain_info, "block_number": lambda p: devnet.head(),
            "block_hash": self._block_hash, "get_block": self._get_block,
            "query": self._query, "query_map": self._query_map, "query_batch": self._query_batch,
            "map_has_entries": self._map_has_entries, "runtime_call": self._runtime_call,
            "constant": self._constant, "events": self._events,
            "account_next_index": self._next_index, "find_extrinsic": self._find_extrinsic,
        }

    # App ----------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[json_errors(error_body)])
        app.router.add_post("/rpc", self.handle_rpc)
        app.router.add_get("/health", self.handle_health)
        app.on_startup.append(self._start_producer)
        app.on_cleanup.append(self._stop_producer)
        return app

    async def handle_health(self, request: web.Request) -> web.Response:
        return web.json_response({"block": self.devnet.head(),
                                  "genesis_hash": self.devnet.genesis_hash})

    async def handle_rpc(self, request: web.Request) -> web.Response:
        req_id = 0
        try:
            req = await self._parse(request)
            req_id = req.id
            result = await self._call(req)
        except RpcFailure as failure:
            body = {"id": req_id, "error": {"code": failure.code, "message": failure.message}}
            return web.json_response(body, status=failure.status)
        except Exception:  # a devnet bug: the traceback in the log, no exception text to the caller
            log.exception("RPC failed path=%r", request.path)  # %r: the path came from the network
            body = {"id": req_id, "error": {"code": "Internal", "message": "the devnet failed; see its log"}}
            return web.json_response(body, status=500)
        return web.json_response({"id": req_id, "result": result})

    async def _parse(self, request: web.Request) -> RpcRequest:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise RpcFailure("TooLarge", f"body over {MAX_BODY_BYTES} bytes", 413)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise RpcFailure("TooLarge", f"body over {MAX_BODY_BYTES} bytes", 413) from None
        try:
            return RpcRequest.model_validate(parse_json(raw))
        except WireError as error:
            raise RpcFailure("ParseError", str(error), 400) from None
        except ValidationError as error:
            raise RpcFailure("InvalidRequest", f"not an RPC request: {error.errors()[0]['msg']}",
                             400) from None

    async def _call(self, req: RpcRequest) -> Any:
        if req.method not in METHODS:
            raise RpcFailure("MethodNotFound", f"unknown method {req.method!r}", 400)
        if req.method == "submit":
            return await self._submit(req.params)
        try:
            return self._handlers[req.method](req.params)
        except ReadError as error:
            status = 400 if error.code == "BadParams" else 200
            raise RpcFailure(error.code, str(error), status) from None

    # Reads --------------------------------------------------------------------

    def _chain_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"genesis_hash": self.devnet.genesis_hash, "block_time": self.devnet.cfg.block_time,
                "head": self.devnet.head(), "head_hash": self.devnet.head_hash(),
                "wire_version": WIRE_VERSION, "ss58_format": 42, "spec_version": 1}

    def _block_hash(self, params: dict[str, Any]) -> str:
        number = _param(params, "block", int, None)
        found = self.devnet.block_hash(number)
        if found is None:
            raise RpcFailure("UnknownBlock", f"block {number} has not been produced")
        return found

    def _get_block(self, params: dict[str, Any]) -> dict | None:
        return self.devnet.get_block(_param(params, "block_number", int, None),
                                     _param(params, "block_hash", str, None))

    def _storage_args(self, params: dict[str, Any]) -> tuple[str, str]:
        return _param(params, "module", str), _param(params, "storage_function", str)

    def _query(self, params: dict[str, Any]) -> Any:
        module, item = self._storage_args(params)
        return self.devnet.storage.query(module, item, _param(params, "params", list, []))

    def _query_map(self, params: dict[str, Any]) -> list:
        module, item = self._storage_args(params)
        rows = self.devnet.storage.query_map(module, item, _param(params, "params", list, []))
        return [[k, v] for k, v in rows]

    def _query_batch(self, params: dict[str, Any]) -> list:
        module, item = self._storage_args(params)
        sets = _param(params, "param_sets", list)
        if len(sets) > 4096 or any(not isinstance(s, list) for s in sets):
            raise RpcFailure("InvalidParams", "param_sets is a list of (<= 4096) lists", 400)
        return [self.devnet.storage.query(module, item, s) for s in sets]

    def _map_has_entries(self, params: dict[str, Any]) -> bool:
        return bool(self._query_map(params))

    def _runtime_call(self, params: dict[str, Any]) -> Any:
        return self.devnet.runtime.call(_param(params, "api", str), _param(params, "method", str),
                                        _param(params, "params", list, []))

    def _constant(self, params: dict[str, Any]) -> Any:
        key = (_param(params, "module", str), _param(params, "name", str))
        constants = {
            ("Aura", "SlotDuration"): int(round(self.devnet.cfg.block_time * 1000)),
            ("Balances", "ExistentialDeposit"): EXISTENTIAL_DEPOSIT_RAO,
            ("SubtensorModule", "InitialStartCallDelay"): 0,
        }
        if key not in constants:
            raise RpcFailure("NotImplemented", f"the devnet has no constant {key[0]}.{key[1]}")
        return constants[key]

    def _events(self, params: dict[str, Any]) -> list:
        return self.devnet.events(_param(params, "block_hash", str, None))

    def _next_index(self, params: dict[str, Any]) -> int:
        return self.devnet.account_next_index(_param(params, "address", str))

    def _find_extrinsic(self, params: dict[str, Any]) -> dict | None:
        return self.devnet.find_extrinsic(_param(params, "hash", str))

    # Writes -------------------------------------------------------------------

    async def _submit(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            ext = Extrinsic.model_validate(_param(params, "extrinsic", dict))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise RpcFailure("InvalidExtrinsic", f"{where}: {first['msg']}", 400) from None
        try:
            ext_hash = self.devnet.submit(ext)
        except PoolRejection as rejection:
            raise RpcFailure(rejection.name, rejection.message) from None
        if not ext.wait:
            return {"hash": ext_hash, "included": False}
        future = asyncio.get_running_loop().create_future()
        self.waiters[ext_hash] = future
        timeout = max(self.devnet.cfg.block_time * SUBMIT_WAIT_BLOCKS, 10.0)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise RpcFailure("Timeout", f"not included within {timeout:.0f}s") from None
        finally:
            self.waiters.pop(ext_hash, None)

    # Blocks -------------------------------------------------------------------

    async def _start_producer(self, app: web.Application) -> None:
        self._producer = asyncio.create_task(self._produce_forever(), name="devnet-blocks")

    async def _stop_producer(self, app: web.Application) -> None:
        if self._producer is not None:
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._producer
        for future in self.waiters.values():
            if not future.done():
                future.set_exception(RpcFailure("ShuttingDown", "the devnet is stopping"))

    async def _produce_forever(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.devnet.cfg.block_time
        next_at = loop.time() + period
        while True:
            await asyncio.sleep(max(next_at - loop.time(), 0.0))
            next_at = max(next_at + period, loop.time())  # no burst after a stall
            try:
                self.produce_one()
            except sqlite3.Error:  # the block was rolled back; the state is still consistent
                log.exception("block production failed; retrying next block")

    def produce_one(self) -> BlockReport:
        """Produce a block now and answer the submitters it includes."""
        report = self.devnet.produce_block()
        for included in report.included:
            future = self.waiters.get(included.hash)
            if future is not None and not future.done():
                future.set_result(included.to_json())
        if self.on_block is not None:
            try:
                self.on_block(report)
            except OSError:  # a closed stdout must not stop the chain
                log.exception("block callback failed")
        return report


async def serve(devnet: Devnet, *, host: str, port: int,
                on_block: BlockCallback | None = None,
                on_ready: Callable[[str], Awaitable[None] | None] | None = None) -> None:
    """Run until SIGTERM/SIGINT, then stop producing, close the server and the state."""
    server = DevnetServer(devnet, on_block=on_block)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    site: GuardedServer | None = None
    try:
        site = await GuardedServer.start(server.app(), None, host, port, ServerLimits(), error_body,
                                         reuse_address=True)
        if on_ready is not None:
            maybe = on_ready(f"devnet://{host}:{port}")
            if asyncio.iscoroutine(maybe):
                await maybe
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if site is not None:
            await site.stop()
        devnet.close()
