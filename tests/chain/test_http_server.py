"""The guarded aiohttp server: idle connections time out, the cap closes idle ones (never a
busy one) to make room, and refusals are JSON."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from chain.http_server import GuardedServer, ServerLimits, json_errors


def body(status: int, code: str, reason: str) -> web.Response:
    return web.json_response({"code": code, "reason": reason}, status=status)


@pytest.fixture
async def server():
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"ok": True})

    async def fast(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app = web.Application(middlewares=[json_errors(body)])
    app.router.add_get("/slow", slow)
    app.router.add_get("/fast", fast)
    app.router.add_get("/boom", boom)
    srv = await GuardedServer.start(app, None, "127.0.0.1", 0, ServerLimits(max_connections=3, keepalive_timeout_s=1.0),
                                    body)
    try:
        yield srv, release
    finally:
        release.set()
        await srv.stop()


async def _get(port: int, path: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s, s.get(
        f"http://127.0.0.1:{port}{path}"
    ) as resp:
        return resp.status, await resp.json()


async def test_the_cap_closes_idle_connections_not_busy_ones(server):
    srv, release = server
    idle = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(2)]
    busy = asyncio.create_task(_get(srv.port, "/slow"))
    for _ in range(100):  # the busy request is in its handler (bounded wait)
        if srv.open_connections == 3:
            break
        await asyncio.sleep(0.02)
    assert await _get(srv.port, "/fast") == (200, {"ok": True})  # room made by closing an idle one
    assert srv.stats.evicted_idle >= 1
    release.set()
    assert await busy == (200, {"ok": True})  # the busy one was never closed
    for _, writer in idle:
        writer.close()


async def test_an_idle_connection_is_closed_after_the_keepalive_timeout(server):
    srv, _ = server
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    assert await asyncio.wait_for(reader.read(1), 5) == b""  # closed by the server, nothing sent
    writer.close()


async def test_refusals_and_our_bugs_answer_json(server):
    srv, _ = server
    assert (await _get(srv.port, "/nope"))[1]["code"] == "not_found"
    status, data = await _get(srv.port, "/boom")
    assert (status, data["code"]) == (500, "internal") and "a bug" not in data["reason"]
