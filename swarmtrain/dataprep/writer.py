"""Writing a split's token stream as fixed-size shards (``protocol.shards`` format).

Tokens are buffered until a shard is full, then written to a temporary file and renamed,
so a shard file under its final name is always complete. Memory: one shard's buffer.

Example:
    >>> w = ShardWriter(Path("out"), "train", shard_tokens=1 << 20, dtype="uint16")
    >>> w.append(np.arange(10, dtype=np.uint32))
    >>> entries = w.finish()          # [ShardEntry(file="train-00000.tok", ...)]
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from protocol.files import atomic_write
from protocol.shards import ShardEntry, encode_header, token_width

SHARD_PATTERN = "{split}-{index:05d}.tok"


class ShardWriter:
    """Cuts one split's tokens into shards of ``shard_tokens`` (the last one shorter)."""

    def __init__(self, out: Path, split: str, shard_tokens: int, dtype: str) -> None:
        self.out, self.split, self.shard_tokens = Path(out), split, shard_tokens
        self.dtype = np.dtype("<u2" if dtype == "uint16" else "<u4")
        self.width = token_width(dtype)
        self.buffer = np.empty(shard_tokens, dtype=self.dtype)
        self.filled = 0
        self.entries: list[ShardEntry] = []
        self.max_id = -1

    def append(self, tokens: np.ndarray) -> None:
        """Add ``tokens`` (any unsigned ints fitting the dtype), writing every shard that fills up."""
        if tokens.size:
            self.max_id = max(self.max_id, int(tokens.max()))
            if self.max_id >= 1 << (8 * self.width):
                raise ValueError(f"token id {self.max_id} does not fit {self.dtype.name} shards")
        pos = 0
        while pos < tokens.size:
            take = min(self.shard_tokens - self.filled, tokens.size - pos)
            self.buffer[self.filled : self.filled + take] = tokens[pos : pos + take]
            self.filled += take
            pos += take
            if self.filled == self.shard_tokens:
                self._flush()

    def finish(self) -> list[ShardEntry]:
        """Write the last, partial shard (if any) and return every shard's manifest entry."""
        if self.filled:
            self._flush()
        return self.entries

    def _flush(self) -> None:
        name = SHARD_PATTERN.format(split=self.split, index=len(self.entries))
        data = encode_header(self.filled, self.width) + self.buffer[: self.filled].tobytes()
        atomic_write(self.out / name, data)
        self.entries.append(ShardEntry(file=name, sha256=hashlib.sha256(data).hexdigest(),
                                       tokens=self.filled, bytes=len(data)))
        self.filled = 0

