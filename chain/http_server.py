"""An aiohttp (HTTPS) server that a crowd of idle, slow or malformed clients cannot exhaust.

It lives in ``chain/`` because both the devnet and the nodes above it serve HTTP with it;
each passes its own JSON error shape (``ErrorBody``).

What plain ``web.AppRunner`` + ``web.TCPSite`` leave open, and what this adds:

- **Idle connections**: closed after ``keepalive_timeout_s`` without a request (aiohttp's
  keep-alive timer runs from the moment a connection is made, so a client that connects
  and sends nothing, or sends its headers byte by byte, is cut at the same bound); a TLS
  handshake must finish within ``handshake_timeout_s``.
- **Open connections**: at most ``max_connections``. At the cap, the oldest connection
  with no request in progress is closed to make room (so idle clients cannot lock out a
  miner); if every connection is busy, the new one is closed at once.
- **aiohttp's own refusals** (malformed HTTP, oversized headers, 404/405/413 raised by the
  router or the body reader) answer in the server's JSON error shape and log one line
  (``%r``-escaped: the text came from the network); a traceback is logged only for an
  exception our own handler let escape (a bug), which answers 500 ``internal``.

Example:
    >>> limits = ServerLimits(max_connections=1024, keepalive_timeout_s=15)
    >>> app = web.Application(middlewares=[json_errors(error_response)])
    >>> server = await GuardedServer.start(app, ssl_context, "127.0.0.1", 0, limits, error_response)
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

log = logging.getLogger("swarmtrain.http")

ErrorBody = Callable[[int, str, str], web.Response]  # (status, code, reason) -> JSON response

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


def _path(request: BaseRequest) -> str:
    return repr(request.rel_url.raw_path[:200])  # repr: escaped, the path came from the network


def json_errors(error_body: ErrorBody) -> Callable[..., Awaitable[web.StreamResponse]]:
    """A middleware: every refusal as ``error_body``; client aborts one line; our bugs one traceback."""

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:  # redirects and the like are answers, not refusals
                raise
            log.info("refused method=%r path=%s status=%d code=%s", request.method[:16], _path(request),
                     exc.status, _code(exc.status))
            return error_body(exc.status, _code(exc.status), exc.reason)
        except asyncio.CancelledError:
            log.info("request aborted by the client method=%r path=%s", request.method[:16], _path(request))
            raise
        except ConnectionError as exc:  # the client went away mid-request: one line, no traceback
            log.info("request aborted by the client method=%r path=%s reason=%s", request.method[:16],
                     _path(request), type(exc).__name__)
            return error_body(400, "aborted", "the connection was lost before the request was complete")
        except Exception:
            log.exception("internal error method=%r path=%s", request.method[:16], _path(request))
            return error_body(500, "internal", "the server failed to handle the request; see its log")

    return middleware


class _JsonErrorHandler(web_protocol.RequestHandler):
    """aiohttp's connection protocol, with its error page replaced by our JSON shape."""

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:  # a response is already on the wire: nothing to add
            raise ConnectionError("response already started; cannot send an error")
        reason = message or (type(exc).__name__ if exc is not None else "bad request")
        manager = self._manager
        if isinstance(exc, ConnectionError):
            log.info("request aborted by the client reason=%s", type(exc).__name__)
        elif status >= 500:
            log.error("internal error reason=%r", reason[:200], exc_info=exc)
        else:
            log.info("refused status=%d code=bad_http reason=%r", status, reason[:200])
        if isinstance(manager, _GuardedWebServer):
            manager.stats.bad_http += status < 500
            resp = manager.error_body(status, "bad_http" if status < 500 else "internal",
                                      "malformed HTTP request" if status < 500 else "internal error")
        else:
            resp = web.json_response({"code": "bad_http", "reason": "malformed HTTP request"}, status=status)
        resp.force_close()
        return resp


class _GuardedWebServer(web.Server):
    """``web.Server`` that hands out ``_JsonErrorHandler``s and enforces the connection cap."""

    def __init__(self, *args: Any, limits: ServerLimits, error_body: ErrorBody, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.error_body = error_body
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
    def __init__(self, app: web.Application, limits: ServerLimits, error_body: ErrorBody, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=limits.keepalive_timeout_s, **kwargs)
        self.limits, self.error_body = limits, error_body

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return _GuardedWebServer(plain.request_handler, request_factory=plain.request_factory,
                                 handler_cancellation=plain.handler_cancellation, limits=self.limits,
                                 error_body=self.error_body, **plain._kwargs)


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
                    limits: ServerLimits, error_body: ErrorBody, *, reuse_address: bool | None = None,
                    ) -> GuardedServer:
        runner = _GuardedRunner(app, limits, error_body, access_log=None, handler_cancellation=True,
                                shutdown_timeout=2.0)
        await runner.setup()
        assert runner.server is not None
        server = await asyncio.get_running_loop().create_server(
            runner.server, host, port, ssl=context, backlog=limits.backlog,
            ssl_handshake_timeout=limits.handshake_timeout_s if context is not None else None,
            reuse_address=reuse_address,
        )
        return cls(runner, server, server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self._server.close()
        await self.runner.cleanup()
