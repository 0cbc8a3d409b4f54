"""The validator's HTTPS API (see "Validator HTTP API" in docs/architecture.md).

``POST /submit`` (btauth-signed, see ``validator.intake``), ``GET /aggregate/{window}``,
``GET /checkpoint/latest``, ``GET /checkpoint/{window}``, ``GET /status``. GETs serve
public data and need no signature (a signed GET is accepted the same way).

Example:
    >>> app = build_app(intake, store, status=lambda: {...})
    >>> server = await HttpsServer.start(app, identity, "127.0.0.1", 0)
    >>> server.port
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from node.checkpoints import CheckpointStore
from node.signed_http import error_response
from node.tls import TlsIdentity, server_context
from protocol.messages import CheckpointManifest
from validator.intake import SUBMIT_PATH, Intake

log = logging.getLogger("swarmtrain.validator.app")

_WINDOW = re.compile(r"^[0-9]{1,18}$")


class ServedBytes:
    """Bytes of aggregates, checkpoints and manifests this validator sent in GET answers
    (what grows with the number of nodes following it; see docs/benchmarks.md, Storage)."""

    def __init__(self) -> None:
        self.by_route: dict[str, int] = {"aggregate": 0, "checkpoint": 0, "manifest": 0}
        self.requests = 0

    def add(self, route: str, nbytes: int) -> None:
        self.by_route[route] = self.by_route.get(route, 0) + nbytes
        self.requests += 1

    @property
    def total(self) -> int:
        return sum(self.by_route.values())


def manifest_of(store: CheckpointStore, window: int) -> CheckpointManifest | None:
    """The ``CheckpointManifest`` of a complete stored checkpoint, or None."""
    raw = store.get_manifest(window)
    if raw is None:
        return None
    fields = {k: v for k, v in raw.items() if k in CheckpointManifest.model_fields}
    return CheckpointManifest.model_validate(fields)


def _window_arg(request: web.Request) -> int | None:
    text = request.match_info.get("window", "")
    return int(text) if _WINDOW.match(text) else None


class Routes:
    """Handlers for the GET endpoints, reading from the checkpoint store."""

    def __init__(self, store: CheckpointStore, status: Callable[[], dict[str, Any]],
                 served: ServedBytes | None = None) -> None:
        self.store = store
        self.status_fn = status
        self.served = served or ServedBytes()

    async def aggregate(self, request: web.Request) -> web.StreamResponse:
        window = _window_arg(request)
        if window is None:
            return error_response(400, "bad_window", "window must be a non-negative integer")
        data = self.store.get_aggregate(window)
        if data is None:
            return error_response(404, "not_ready", f"aggregate of window {window} is not published (yet)")
        self.served.add("aggregate", len(data))
        return web.Response(body=data, content_type="application/octet-stream")

    async def latest_checkpoint(self, request: web.Request) -> web.Response:
        window = self.store.latest_checkpoint()
        manifest = manifest_of(self.store, window) if window is not None else None
        if manifest is None:
            return error_response(404, "no_checkpoint", "no checkpoint is available yet")
        text = manifest.model_dump_json()
        self.served.add("manifest", len(text))
        return web.json_response(text=text)

    async def checkpoint(self, request: web.Request) -> web.StreamResponse:
        window = _window_arg(request)
        if window is None:
            return error_response(400, "bad_window", "window must be a non-negative integer")
        manifest = self.store.get_manifest(window)
        if manifest is None:
            return error_response(404, "no_checkpoint", f"no checkpoint of window {window}")
        self.served.add("checkpoint", int(manifest.get("size", 0)))
        return web.FileResponse(self.store.checkpoint_path(window), headers={"Content-Type": "application/octet-stream"})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(text=json.dumps(self.status_fn(), default=str))


def build_app(intake: Intake, store: CheckpointStore, status: Callable[[], dict[str, Any]],
              *, max_body_bytes: int, served: ServedBytes | None = None) -> web.Application:
    """The aiohttp application; ``client_max_size`` bounds every request body."""
    app = web.Application(client_max_size=max_body_bytes)
    routes = Routes(store, status, served)
    app.router.add_post(SUBMIT_PATH, intake.handle)
    app.router.add_get("/aggregate/{window}", routes.aggregate)
    app.router.add_get("/checkpoint/latest", routes.latest_checkpoint)
    app.router.add_get("/checkpoint/{window}", routes.checkpoint)
    app.router.add_get("/status", routes.status)
    return app


class HttpsServer:
    """A running aiohttp site over TLS; ``stop()`` releases the port."""

    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self.runner = runner
        self.port = port

    @classmethod
    async def start(cls, app: web.Application, identity: TlsIdentity, host: str, port: int) -> HttpsServer:
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=server_context(identity))
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("HTTPS API on %s:%d (certificate sha256 %s)", host, bound, identity.fingerprint)
        return cls(runner, bound)

    async def stop(self) -> None:
        await self.runner.cleanup()
