"""Test helper: a real devnet process on a free 127.0.0.1 port, always stopped afterwards.

Example:
    >>> with run_devnet(tmp_path, block_time=0.1, tempo=5) as net:    # doctest: +SKIP
    ...     async with sdk_client(net.url) as client:                  # the SDK's own client
    ...         await client.block()
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from chain.devnet.substrate import DevnetSubstrate
from chain.devnet.wire import Extrinsic, signing_payload, to_jsonable
from protocol.ports import free_port
from protocol.retry import Backoff, Waiter

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0



class DevnetProcess:
    """A devnet subprocess: ``url`` (devnet://), ``http_url``, ``proc``; restartable."""

    def __init__(self, state_dir: Path, args: list[str], port: int, host: str = "127.0.0.1"):
        self.state_dir = state_dir
        self.args = args
        self.port = port
        self.host = host
        self.url = f"devnet://{host}:{port}"
        self.http_url = f"http://{host}:{port}"
        self.log_path = state_dir / "devnet.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "chain.devnet", "--host", self.host,
               "--port", str(self.port), "--state", str(self.state_dir), *self.args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.wait_ready()

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(self.http_url + "/health", timeout=2.0) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> dict:
        waiter = Waiter(timeout, Backoff.every(0.1))
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"devnet exited with {self.proc.returncode}:\n{self.log_tail()}")
            found = self.health()
            if found is not None:
                return found
            if not waiter.pause_sync():
                break
        self.stop()
        raise TimeoutError(f"devnet not ready within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=STOP_TIMEOUT_S)

    def kill9(self) -> None:
        """Kill the process with SIGKILL (no cleanup), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port and state."""
        self.stop()
        self.start()


@contextlib.contextmanager
def run_devnet(state_dir: str | Path, *, block_time: float = 0.2, tempo: int = 10,
               port: int | None = None, extra_args: Sequence[str] = ()
               ) -> Iterator[DevnetProcess]:
    """Start ``python -m chain.devnet`` and yield it once it answers; always stop it."""
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    args = ["--block-time", str(block_time), "--tempo", str(tempo), "--quiet", *extra_args]
    devnet = DevnetProcess(state, args, port or free_port())
    try:
        devnet.start()
        yield devnet
    finally:
        devnet.stop()


def sdk_client(url: str) -> Any:
    """A plain ``bittensor.Client`` on the devnet at ``url`` (devnet://HOST:PORT)."""
    import bittensor as bt

    return bt.Client("ws://" + url.removeprefix("devnet://"), substrate=DevnetSubstrate(url))


def make_extrinsic(keypair: Any, module: str, function: str, params: dict[str, Any], *,
                   genesis_hash: str, nonce: int, era_block: int, wait: bool = True
                   ) -> Extrinsic:
    """A devnet extrinsic signed by ``keypair`` (anything with ``ss58_address``/``sign``)."""
    fields = {"genesis_hash": genesis_hash, "module": module, "function": function,
              "params": to_jsonable(params), "signer": keypair.ss58_address, "nonce": nonce,
              "era_block": era_block}
    signature = bytes(keypair.sign(signing_payload(**fields)))
    return Extrinsic(**fields, signature="0x" + signature.hex(), wait=wait,
                     crypto_type=int(getattr(keypair, "crypto_type", 1)))
