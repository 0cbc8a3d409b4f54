"""``swarmtrain data serve``: serve a prepared dataset folder over HTTP for miners and validators.

Any static file server works (the layout is plain files next to ``manifest.json``); this
one is for local networks, tests and the data benchmark. It serves only plain files of
the folder itself (no listing, no sub-folders), records each request, and can cap its
upload rate (``rate_bytes_per_s``) to stand in for a home connection.

Example:
    >>> with serve_in_thread(Path("data/corpus")) as server:
    ...     ds = ShardedDataset.open(server.url)
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CHUNK = 256 << 10


class ShardServer:
    """An aiohttp server of one folder's files at ``/NAME``."""

    def __init__(self, folder: Path, host: str = "127.0.0.1", port: int = 0,
                 rate_bytes_per_s: float | None = None) -> None:
        self.folder, self.host, self.port = Path(folder), host, port
        self.rate = rate_bytes_per_s
        self.requests: list[str] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/{name}", self._get)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _get(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = self.folder / name
        if not _NAME.match(name) or not path.is_file():
            raise web.HTTPNotFound(text=f"no file {name}\n")
        self.requests.append(name)
        size = path.stat().st_size
        resp = web.StreamResponse(headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        started, sent = time.monotonic(), 0
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                await resp.write(chunk)
                sent += len(chunk)
                if self.rate:  # stay under the rate: sleep until the bytes sent are "due"
                    await asyncio.sleep(max(0.0, sent / self.rate - (time.monotonic() - started)))
        await resp.write_eof()
        return resp


@contextmanager
def serve_in_thread(folder: Path, *, rate_bytes_per_s: float | None = None,
                    timeout_s: float = 10.0) -> Iterator[ShardServer]:
    """A ``ShardServer`` on 127.0.0.1 running in its own thread and loop, for synchronous callers."""
    server = ShardServer(folder, rate_bytes_per_s=rate_bytes_per_s)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="shard-server", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout_s)
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout_s)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)
        loop.close()
