"""An aiohttp HTTPS server that a crowd of idle, slow or malformed clients cannot exhaust.

What plain ``web.AppRunner`` + ``web.TCPSite`` leave open, and what this adds:

- **Idle connections**: closed after ``keepalive_timeout_s`` without a request (aiohttp's
  keep-alive timer runs from the moment a connection is made, so a client that connects
  and sends nothing, or sends its headers byte by byte, is cut at the same bound); a TLS
  handshake must finish within ``handshake_timeout_s``.
- **Open connections**: at most ``max_connections``. At the cap, the oldest connection
  with no request in progress is closed to make room (so idle clients cannot lock out a
  miner); if every connection is busy, the new one is closed at once.
- **aiohttp's own refusals** (malformed HTTP, oversized headers, 404/405/413 raised by the
  router or the body reader) answer in the project's JSON error shape
  ``{"code", "reason"}`` and log one escaped line; a traceback is logged only for an
  exception our own handler let escape (a bug), which answers 500 ``internal``.

Example:
    >>> limits = ServerLimits(max_connections=1024, keepalive_timeout_s=15)
    >>> app = web.Application(middlewares=[json_errors])
    >>> server = await GuardedServer.start(app, ssl_context, "127.0.0.1", 0, limits)
    >>> server.port
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web, web_protocol
from aiohttp.web_request import BaseRequest

from node.logs import progress_line
from node.signed_http import error_response

log = logging.getLogger("swarmtrain.node.http")

# aiohttp's HTTP exceptions by status -> our error code.
HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 408: "timeout",
              411: "length_required", 413: "too_large", 414: "uri_too_long", 415: "unsupported_media_type",
              431: "headers_too_large"}


@dataclass(frozen=True)
class ServerLimits:
    """Connection bounds of one server (see the module docstring)."""

    max_connections: int = 1024
    keepalive_timeout_s: float = 15.0
    handshake_timeout_s: float = 10.0
    backlog: int = 512


@dataclass
class ConnectionStats:
    """Counters for /status: connections closed by the cap and refusals aiohttp raised."""

    evicted_idle: int = 0
    refused_at_cap: int = 0
    bad_http: int = 0


def _code(status: int) -> str:
    return HTTP_CODES.get(status, "bad_request" if status < 500 else "internal")


@web.middleware
async def json_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
    """Every refusal in the JSON error shape; client aborts one line; our bugs one traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects and the like are answers, not refusals
            raise
        log.info(progress_line("refused", method=request.method, path=request.rel_url.raw_path[:200],
                               status=exc.status, code=_code(exc.status), reason=exc.reason))
        return error_response(exc.status, _code(exc.status), exc.reason)
    except (ConnectionError, asyncio.CancelledError) as exc:
        log.info(progress_line("request aborted by the client", method=request.method,
                               path=request.rel_url.raw_path[:200], reason=type(exc).__name__))
        raise
    except Exception:
        log.exception(progress_line("internal error", method=request.method, path=request.rel_url.raw_path[:200]))
        return error_response(500, "internal", "the server failed to handle the request; see its log")


class _JsonErrorHandler(web_protocol.RequestHandler):
    """aiohttp's connection protocol, with its error page replaced by our JSON shape."""

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:  # a response is already on the wire: nothing to add
            raise ConnectionError("response already started; cannot send an error")
        reason = message or (type(exc).__name__ if exc is not None else "bad request")
        if status >= 500:
            log.error(progress_line("internal error", reason=reason), exc_info=exc)
        else:
            manager = self._manager
            if isinstance(manager, _GuardedWebServer):
                manager.stats.bad_http += 1
            log.info(progress_line("refused", status=status, code="bad_http", reason=reason[:200]))
        resp = error_response(status, "bad_http" if status < 500 else "internal",
                              "malformed HTTP request" if status < 500 else "internal error")
        resp.force_close()
        return resp


class _GuardedWebServer(web.Server):
    """``web.Server`` that hands out ``_JsonErrorHandler``s and enforces the connection cap."""

    def __init__(self, *args: Any, limits: ServerLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.stats = ConnectionStats()

    def __call__(self) -> web_protocol.RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: web_protocol.RequestHandler, transport: asyncio.Transport) -> None:
        if len(self._connections) >= self.limits.max_connections and not self._evict_idle():
            self.stats.refused_at_cap += 1
            handler.force_close()
            return
        super().connection_made(handler, transport)

    def _evict_idle(self) -> bool:
        """Close the oldest connection with no request in progress; False if all are busy."""
        for conn in self._connections:  # insertion order: oldest first
            if not getattr(conn, "_request_in_progress", True):
                self.stats.evicted_idle += 1
                conn.force_close()
                self._connections.pop(conn, None)
                return True
        return False


class _GuardedRunner(web.AppRunner):
    def __init__(self, app: web.Application, limits: ServerLimits, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=limits.keepalive_timeout_s, **kwargs)
        self.limits = limits

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return _GuardedWebServer(plain.request_handler, request_factory=plain.request_factory,
                                 handler_cancellation=plain.handler_cancellation, limits=self.limits,
                                 **plain._kwargs)


class GuardedServer:
    """A running HTTPS site with the limits above; ``stop()`` releases the port."""

    def __init__(self, runner: _GuardedRunner, server: asyncio.AbstractServer, port: int) -> None:
        self.runner, self._server, self.port = runner, server, port

    @property
    def stats(self) -> ConnectionStats:
        server = self.runner.server
        return server.stats if isinstance(server, _GuardedWebServer) else ConnectionStats()

    @property
    def open_connections(self) -> int:
        server = self.runner.server
        return len(server.connections) if server is not None else 0

    @classmethod
    async def start(cls, app: web.Application, context: ssl.SSLContext | None, host: str, port: int,
                    limits: ServerLimits) -> GuardedServer:
        runner = _GuardedRunner(app, limits, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
        await runner.setup()
        assert runner.server is not None
        server = await asyncio.get_running_loop().create_server(
            runner.server, host, port, ssl=context, backlog=limits.backlog,
            ssl_handshake_timeout=limits.handshake_timeout_s if context is not None else None,
        )
        return cls(runner, server, server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self._server.close()
        await self.runner.cleanup()
