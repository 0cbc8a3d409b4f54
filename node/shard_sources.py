"""Where a prepared dataset's files come from: a local folder or an HTTP(S) URL.

A source serves the files next to a manifest by name (``manifest.json``,
``train-00000.tok``, ...). It only moves bytes: checking them against the manifest is
the cache's job (``node.shard_cache``), so a new kind of source (an S3-compatible
bucket, say) implements the three methods of ``ShardSource`` and nothing else.

Example:
    >>> source = open_source("https://data.example.org/fineweb-bpe/manifest.json")
    >>> source.describe("manifest.json")
    'https://data.example.org/fineweb-bpe/manifest.json'
"""

from __future__ import annotations

import io
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO, Protocol

from protocol.data import DataError
from protocol.shards import MANIFEST_FILE

CHUNK = 1 << 20
DEFAULT_TIMEOUT_S = 60.0


class ShardFetchError(DataError):
    """A file could not be fetched (network, HTTP status, missing file); retrying may help."""


class ShardSource(Protocol):
    """Serves the files of one prepared dataset by name."""

    def describe(self, name: str) -> str:
        """Where ``name`` comes from (a path or URL), for messages."""
        ...

    def local_path(self, name: str) -> Path | None:
        """A local file usable in place (no copy), or None when it must be downloaded."""
        ...

    def download(self, name: str, dest: BinaryIO, max_bytes: int) -> None:
        """Write the file's bytes to ``dest``; ``ShardFetchError`` if missing, unreachable or
        larger than ``max_bytes``."""
        ...


def read_all(source: ShardSource, name: str, max_bytes: int) -> bytes:
    """A small file (the manifest, a tokenizer) as bytes."""
    local = source.local_path(name)
    if local is not None:
        try:
            if local.stat().st_size > max_bytes:
                raise ShardFetchError(f"{local} is over the {max_bytes}-byte limit")
            return local.read_bytes()
        except OSError as e:
            raise ShardFetchError(f"cannot read {local}: {e.strerror or e}") from e
    buf = io.BytesIO()
    source.download(name, buf, max_bytes)
    return buf.getvalue()


class LocalDirSource:
    """Files in a local folder, used in place."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def describe(self, name: str) -> str:
        return str(self.root / name)

    def local_path(self, name: str) -> Path | None:
        path = self.root / name
        if not path.is_file():
            raise ShardFetchError(f"{path} does not exist: the dataset folder is incomplete; copy it "
                                  "again or re-run 'swarmtrain data prepare'")
        return path

    def download(self, name: str, dest: BinaryIO, max_bytes: int) -> None:
        path = self.local_path(name)
        assert path is not None
        with path.open("rb") as f:
            shutil.copyfileobj(f, dest, CHUNK)


class HttpSource:
    """Files under a base URL (``https://host/dataset/``), fetched with GET."""

    def __init__(self, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.timeout_s = timeout_s

    def describe(self, name: str) -> str:
        return urllib.parse.urljoin(self.base_url, urllib.parse.quote(name))

    def local_path(self, name: str) -> Path | None:
        return None

    def download(self, name: str, dest: BinaryIO, max_bytes: int) -> None:
        url = self.describe(name)
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:  # noqa: S310 (http/https only)
                _copy_bounded(resp, dest, max_bytes, url)
        except urllib.error.HTTPError as e:
            raise ShardFetchError(f"GET {url}: HTTP {e.code} {e.reason}") from e
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise ShardFetchError(f"GET {url}: {reason}") from e


def _copy_bounded(resp: BinaryIO, dest: BinaryIO, max_bytes: int, url: str) -> None:
    copied = 0
    while chunk := resp.read(CHUNK):
        copied += len(chunk)
        if copied > max_bytes:
            raise ShardFetchError(f"GET {url}: more than the {max_bytes} bytes the manifest lists")
        dest.write(chunk)


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def open_source(location: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> ShardSource:
    """The source of a dataset location: an ``http(s)://`` URL or a local folder, either naming
    the folder or its ``manifest.json``."""
    if is_url(location):
        base = location[: -len(MANIFEST_FILE)] if location.endswith("/" + MANIFEST_FILE) else location
        return HttpSource(base, timeout_s)
    path = Path(location)
    return LocalDirSource(path.parent if path.name == MANIFEST_FILE else path)


def is_sharded_location(location: str) -> bool:
    """True for a URL, or a folder (or file) that is/holds a ``manifest.json``."""
    if is_url(location):
        return True
    path = Path(location)
    return (path.is_dir() and (path / MANIFEST_FILE).is_file()) or (path.name == MANIFEST_FILE and path.is_file())
