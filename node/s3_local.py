"""A local S3-protocol server for development runs and tests: moto's server mode on 127.0.0.1.

``swarmtrain local --storage s3``, the tests and ``scripts/bench_storage.py`` start one
as a child process (``python -m moto.server``), create the bucket, and stop it at the
end. It speaks the same HTTP API as AWS S3, R2 or MinIO, so the nodes run the code
they run against a real store. Needs ``moto[server]`` (``pip install 'swarmtrain[s3-local]'``;
the dev extra has it).

Example:
    >>> with running_local_s3() as s3:
    ...     location = s3.location(prefix="validator")   # StoreLocation on 127.0.0.1
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from node.storage import ObjectStore, StorageError, StoreLocation
from protocol.ports import free_port
from protocol.retry import Backoff, Waiter

BUCKET = "swarmtrain-local"
WRITE_KEY = ("local-writer", "local-writer-secret")  # moto accepts any keys
READ_KEY = ("local-reader", "local-reader-secret")


class LocalS3Error(RuntimeError):
    """The local S3 server could not be started."""


def moto_available() -> bool:
    return importlib.util.find_spec("moto") is not None and importlib.util.find_spec("flask") is not None



@dataclass(frozen=True)
class LocalS3:
    """Where a started local server listens, and the bucket it holds."""

    port: int
    bucket: str = BUCKET

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self, python: str = sys.executable) -> list[str]:
        return [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def location(self, prefix: str | None = None, *, read_keys: bool = True) -> StoreLocation:
        """The read location a validator would publish (read keys, or anonymous)."""
        keys = {"key_id": READ_KEY[0], "secret": READ_KEY[1]} if read_keys else {}
        return StoreLocation(endpoint=self.endpoint, bucket=self.bucket, prefix=prefix, **keys)

    def wait_ready(self, timeout: float = 30.0, alive: object = None) -> None:
        """Block until the server answers (``alive``: a callable, False once the child died)."""
        waiter = Waiter(timeout, Backoff.every(0.1))
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2).close()
                return
            except (urllib.error.URLError, OSError) as exc:
                if callable(alive) and not alive():
                    raise LocalS3Error("the local S3 server exited during start-up") from exc
                if not waiter.pause_sync():
                    raise LocalS3Error(f"the local S3 server did not answer within {timeout:.0f}s") from exc

    def create_bucket(self) -> None:
        """Create the bucket with the writer's keys (idempotent)."""

        async def create() -> None:
            store = ObjectStore(StoreLocation(endpoint=self.endpoint, bucket=self.bucket),
                                key_id=WRITE_KEY[0], secret=WRITE_KEY[1], timeout_s=10)
            try:
                await store.create_bucket()
            finally:
                await store.close()

        try:  # in a thread of its own: callers may be inside an event loop
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, create()).result(timeout=60)
        except StorageError as exc:
            raise LocalS3Error(f"could not create bucket {self.bucket}: {exc}") from exc


def write_env() -> dict[str, str]:
    """The environment a local validator needs to publish to the local server."""
    return {"SWARMTRAIN_VALIDATOR_S3_WRITE_KEY_ID": WRITE_KEY[0], "SWARMTRAIN_VALIDATOR_S3_WRITE_SECRET": WRITE_KEY[1],
            "SWARMTRAIN_VALIDATOR_S3_READ_KEY_ID": READ_KEY[0], "SWARMTRAIN_VALIDATOR_S3_READ_SECRET": READ_KEY[1]}


@contextmanager
def running_local_s3(bucket: str = BUCKET) -> Iterator[LocalS3]:
    """Start a local S3 server with ``bucket`` in it; stop it (terminate, then kill) on exit."""
    if not moto_available():
        raise LocalS3Error("a local S3 server needs moto: pip install 'swarmtrain[s3-local]'")
    s3 = LocalS3(free_port(), bucket)
    proc = subprocess.Popen(s3.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        s3.wait_ready(alive=lambda: proc.poll() is None)
        s3.create_bucket()
        yield s3
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
