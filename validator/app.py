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

from chain.http_server import GuardedServer, ServerLimits, json_errors
from node.checkpoints import CheckpointStore
from node.logs import progress_line
from node.signed_http import error_response
from node.tls import TlsIdentity, server_context
from protocol.messages import CheckpointManifest
from validator.intake import SUBMIT_PATH, Intake

log = logging.getLogger("swarmtrain.validator.app")

_WINDOW = re.compile(r"^[0-9]{1,18}$")


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
                 on_sent: Callable[[int], None] | None = None) -> None:
        self.store = store
        self.status_fn = status
        self.on_sent = on_sent or (lambda n: None)  # bytes of aggregates and checkpoints served

    async def aggregate(self, request: web.Request) -> web.StreamResponse:
        window = _window_arg(request)
        if window is None:
            return error_response(400, "bad_window", "window must be a non-negative integer")
        data = self.store.get_aggregate(window)
        if data is None:
            return error_response(404, "not_ready", f"aggregate of window {window} is not published (yet)")
        self.on_sent(len(data))
        return web.Response(body=data, content_type="application/octet-stream")

    async def latest_checkpoint(self, request: web.Request) -> web.Response:
        window = self.store.latest_checkpoint()
        manifest = manifest_of(self.store, window) if window is not None else None
        if manifest is None:
            return error_response(404, "no_checkpoint", "no checkpoint is available yet")
        text = manifest.model_dump_json()
        self.on_sent(len(text))
        return web.json_response(text=text)

    async def checkpoint(self, request: web.Request) -> web.StreamResponse:
        window = _window_arg(request)
        if window is None:
            return error_response(400, "bad_window", "window must be a non-negative integer")
        if self.store.get_manifest(window) is None:
            return error_response(404, "no_checkpoint", f"no checkpoint of window {window}")
        path = self.store.checkpoint_path(window)
        self.on_sent(path.stat().st_size if path.exists() else 0)
        return web.FileResponse(self.store.checkpoint_path(window), headers={"Content-Type": "application/octet-stream"})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(text=json.dumps(self.status_fn(), default=str))


def build_app(intake: Intake, store: CheckpointStore, status: Callable[[], dict[str, Any]],
              *, max_body_bytes: int, on_sent: Callable[[int], None] | None = None,
              extra: Callable[[web.Application], None] | None = None) -> web.Application:
    """The aiohttp application; ``client_max_size`` bounds every request body, and every
    refusal (aiohttp's own included) answers in the JSON error shape. ``extra`` adds routes
    (the operator routes of ``validator.dashboard``)."""
    app = web.Application(client_max_size=max_body_bytes, middlewares=[json_errors(error_response)])
    routes = Routes(store, status, on_sent)
    app.router.add_post(SUBMIT_PATH, intake.handle)
    app.router.add_get("/aggregate/{window}", routes.aggregate)
    app.router.add_get("/checkpoint/latest", routes.latest_checkpoint)
    app.router.add_get("/checkpoint/{window}", routes.checkpoint)
    app.router.add_get("/status", routes.status)
    if extra is not None:
        extra(app)
    return app


class HttpsServer:
    """A running HTTPS site with connection limits (``node.http_server``); ``stop()`` releases the port."""

    def __init__(self, server: GuardedServer) -> None:
        self.server = server
        self.port = server.port

    @classmethod
    async def start(cls, app: web.Application, identity: TlsIdentity, host: str, port: int,
                    limits: ServerLimits | None = None) -> HttpsServer:
        server = await GuardedServer.start(app, server_context(identity), host, port, limits or ServerLimits(),
                                          error_response)
        log.info(progress_line("HTTPS API", host=host, port=server.port, certificate_sha256=identity.fingerprint))
        return cls(server)

    def connection_stats(self) -> dict[str, int]:
        """Open connections and what the limits closed, for /status."""
        stats = self.server.stats
        return {"open": self.server.open_connections, "evicted_idle": stats.evicted_idle,
                "refused_at_cap": stats.refused_at_cap, "bad_http": stats.bad_http}

    async def stop(self) -> None:
        await self.server.stop()
