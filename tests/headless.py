"""A real headless Chromium driven over the DevTools protocol (CDP), for the dashboard test.

Starts ``chromium --headless`` with its own throw-away profile and a DevTools port it picks
itself (read back from ``DevToolsActivePort``), opens a page, and evaluates JavaScript in it
to read the DOM. Only the ``chromium`` binary is needed (Debian: ``apt-get install -y
chromium``; ``.ci/run`` installs it); ``find_chromium`` returns None without it.

Example:
    >>> with Chromium(find_chromium(), tmp_path) as browser:
    ...     facts = asyncio.run(browser.read(url, "document.title", until="document.title !== ''"))
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

from protocol.retry import Backoff, Waiter, poll_until

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--ignore-certificate-errors",  # the validator's certificate is self-signed
]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """One headless browser process; ``with`` stops it (terminate, then kill)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.profile = Path(workdir) / "chromium-profile"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> Chromium:
        self.profile.mkdir(parents=True, exist_ok=True)
        (self.profile / "DevToolsActivePort").unlink(missing_ok=True)  # a stale one names a dead port
        argv = [self.binary, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
                "about:blank"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.port = self._devtools_port(timeout=30.0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def _devtools_port(self, timeout: float) -> int:
        marker = self.profile / "DevToolsActivePort"
        waiter = Waiter(timeout, Backoff.every(0.1))
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            if marker.exists():
                text = marker.read_text().split()
                if text and text[0].isdigit():
                    return int(text[0])
            if not waiter.pause_sync():
                break
        raise RuntimeError("chromium did not open its DevTools port")

    async def read(self, url: str, expression: str, *, until: str, timeout: float = 30.0) -> Any:
        """Open ``url`` in the page, wait until the JS ``until`` is true, return the JSON value of
        ``expression`` (evaluated in the page)."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
            async with http.get(f"http://127.0.0.1:{self.port}/json/list") as resp:
                pages = [t for t in await resp.json() if t.get("type") == "page"]
            async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                cdp = _Cdp(ws)
                await cdp.call("Page.navigate", url=url)
                # The page may still be loading (no document.body yet): a throw counts as "not yet".
                probe = f"(() => {{ try {{ return Boolean({until}); }} catch (e) {{ return false; }} }})()"
                if not await poll_until(lambda: cdp.evaluate(probe), bool, timeout=timeout,
                                        interval=0.25, on_timeout=None):
                    body = await cdp.evaluate("document.body ? document.body.innerText.slice(0, 2000) : ''")
                    raise TimeoutError(f"the page never satisfied {until!r}; it shows:\n{body}")
                return await cdp.evaluate(f"JSON.stringify({expression})", parse=True)


class _Cdp:
    """Request/response over one DevTools websocket (events are skipped)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        await self.ws.send_json({"id": msg_id, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json()
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def evaluate(self, expression: str, *, parse: bool = False) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        value = result.get("result", {}).get("value")
        return json.loads(value) if parse and isinstance(value, str) else value
