"""Token shards and their manifest: the format every node reads, and where each sample lies.

A prepared dataset is a folder (or the same files under a URL): ``manifest.json``, the
tokenizer file (for BPE tokenizers) and shards ``train-00000.tok``, ``val-00000.tok``, ...

Shard file (all integers little-endian)::

    offset  size  field
    0       8     magic b"SWTOKENS"
    8       4     format version, u32 = 1
    12      4     bytes per token, u32: 2 (uint16 ids) or 4 (uint32 ids)
    16      8     token count n, u64
    24      8     reserved, u64 = 0
    32      n*w   the token ids

so a shard's size is exactly ``32 + n * w`` bytes. Documents are concatenated, each
followed by the tokenizer's end-of-document id; every shard of a split holds exactly
``shard_tokens`` tokens but the last. The manifest lists each shard's file name, sha256
(of the whole file), token count and size; the dataset's identity is the sha256 of the
manifest file's bytes (written canonically: sorted keys, one-space indent, final newline).

Samples never cross a shard: shard ``k`` of a split holds ``(n_k - 1) // seq_len`` samples
(``tokens[j*seq_len : j*seq_len + seq_len + 1]`` for sample ``j``), numbered after those of
shards ``0..k-1``. A full shard's sample count is the ``page`` of the split's
``Population``, so the assignment keeps a uid's window in few shards.

Example:
    >>> header = encode_header(10, 2)
    >>> len(header), decode_header(header, "x.tok")
    (32, (2, 10))
    >>> layout = SplitLayout.build([ShardEntry(file="a.tok", sha256="0" * 64, tokens=100, bytes=232),
    ...                             ShardEntry(file="b.tok", sha256="0" * 64, tokens=40, bytes=112)],
    ...                            seq_len=8, shard_tokens=100)
    >>> int(layout.population), layout.population.page, layout.locate(13)
    (16, 12, (1, 8))
"""

from __future__ import annotations

import bisect
import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from protocol.errors import DataError
from protocol.tokenizer import TokenizerInfo
from protocol.windows import Population

MAGIC = b"SWTOKENS"
SHARD_VERSION = 1
HEADER = struct.Struct("<8sIIQQ")
HEADER_SIZE = HEADER.size  # 32
MANIFEST_FORMAT: Final = "swarmtrain-shards/1"
MANIFEST_FILE = "manifest.json"
MAX_MANIFEST_BYTES = 64 << 20
_FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # no slashes: files sit next to the manifest

Split = Literal["train", "val"]


class ShardError(DataError):
    """A shard file is truncated, malformed or not the one the manifest lists."""


class ManifestError(DataError):
    """A manifest is unreadable or inconsistent."""


class ShardEntry(BaseModel):
    """One shard in the manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(pattern=_FILE_NAME)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    tokens: int = Field(ge=1)
    bytes: int = Field(ge=HEADER_SIZE)


class TokenizerEntry(BaseModel):
    """The tokenizer the shards were made with (``file``: its JSON next to the manifest, or "")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["bytes", "hf"]
    sha256: str = Field(pattern=r"^([0-9a-f]{64})?$")
    vocab_size: int = Field(ge=2, le=2**32)
    eos_id: int = Field(ge=0)
    file: str = Field("", pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]{0,127})?$")

    def info(self) -> TokenizerInfo:
        return TokenizerInfo(kind=self.kind, sha256=self.sha256, vocab_size=self.vocab_size, eos_id=self.eos_id)


class Manifest(BaseModel):
    """What ``swarmtrain data prepare`` wrote: the shards of each split and how they were made."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["swarmtrain-shards/1"] = MANIFEST_FORMAT
    tokenizer: TokenizerEntry
    dtype: Literal["uint16", "uint32"]
    shard_tokens: int = Field(ge=2)
    max_token_id: int = Field(ge=0)
    train: list[ShardEntry] = Field(min_length=1)
    val: list[ShardEntry] = Field(min_length=1)
    documents: dict[str, int] = Field(default_factory=dict, description="documents per split")
    text_bytes: int = Field(0, ge=0, description="UTF-8 bytes of text tokenized")
    val_fraction: float = Field(gt=0, lt=1)
    seed: str = Field(max_length=128, description="the shuffle seed of the document order")

    @model_validator(mode="after")
    def _check(self) -> Manifest:
        width = token_width(self.dtype)
        names = [e.file for e in (*self.train, *self.val)]
        if len(set(names)) != len(names) or self.tokenizer.file in names or MANIFEST_FILE in names:
            raise ValueError("shard file names must be unique and differ from the manifest and tokenizer")
        for split in ("train", "val"):
            entries = self.shards(split)
            for i, e in enumerate(entries):
                last = i == len(entries) - 1
                if e.tokens > self.shard_tokens or (not last and e.tokens != self.shard_tokens):
                    raise ValueError(f"{e.file}: {e.tokens} tokens, but every {split} shard except the "
                                     f"last holds shard_tokens={self.shard_tokens}")
                if e.bytes != HEADER_SIZE + e.tokens * width:
                    raise ValueError(f"{e.file}: bytes {e.bytes} != {HEADER_SIZE} + tokens * {width}")
        if self.max_token_id >= self.tokenizer.vocab_size:
            raise ValueError(f"max_token_id {self.max_token_id} is outside the tokenizer's "
                             f"{self.tokenizer.vocab_size} ids")
        return self

    def shards(self, split: Split) -> list[ShardEntry]:
        if split == "train":
            return self.train
        if split == "val":
            return self.val
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")

    def total_tokens(self, split: Split) -> int:
        return sum(e.tokens for e in self.shards(split))


def token_width(dtype: str) -> int:
    return 2 if dtype == "uint16" else 4


def dtype_for_vocab(vocab_size: int) -> Literal["uint16", "uint32"]:
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def manifest_bytes(manifest: Manifest) -> bytes:
    """The canonical file bytes of a manifest (its hash is the dataset's identity)."""
    return (json.dumps(manifest.model_dump(mode="json"), sort_keys=True, indent=1) + "\n").encode()


def manifest_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_manifest(data: bytes, where: str) -> Manifest:
    """The manifest in ``data``; ``ManifestError`` names ``where`` and the fix."""
    try:
        return Manifest.model_validate_json(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ManifestError(
            f"manifest {where} is invalid at {loc}: {first['msg']} ({e.error_count()} error(s)); "
            "re-create it with 'swarmtrain data prepare'"
        ) from e


# --- shard files ------------------------------------------------------------------------


def encode_header(tokens: int, width: int) -> bytes:
    return HEADER.pack(MAGIC, SHARD_VERSION, width, tokens, 0)


def decode_header(data: bytes, where: str) -> tuple[int, int]:
    """(bytes per token, token count) of a shard header; ``ShardError`` if it is not one."""
    if len(data) < HEADER_SIZE:
        raise ShardError(f"shard {where} is truncated: {len(data)} bytes, shorter than its "
                         f"{HEADER_SIZE}-byte header; delete it so it is fetched again")
    magic, version, width, tokens, _ = HEADER.unpack_from(data)
    if magic != MAGIC or version != SHARD_VERSION or width not in (2, 4):
        raise ShardError(f"{where} is not a swarmtrain token shard (magic {magic!r}, version {version}, "
                         f"width {width}); re-create it with 'swarmtrain data prepare'")
    return width, tokens


def check_shard_size(where: str, file_size: int, width: int, tokens: int, entry: ShardEntry) -> None:
    """A shard's header and size must agree with each other and with its manifest entry."""
    expected = HEADER_SIZE + tokens * width
    if file_size < expected:
        raise ShardError(
            f"shard {where} is truncated: {file_size} bytes, its header says {tokens} tokens "
            f"({expected} bytes); delete it so it is fetched again, or re-run 'swarmtrain data prepare'"
        )
    if file_size != expected or tokens != entry.tokens or file_size != entry.bytes:
        raise ShardError(
            f"shard {where} does not match the manifest: {file_size} bytes and {tokens} tokens, the "
            f"manifest lists {entry.bytes} bytes and {entry.tokens} tokens; the shards and the "
            "manifest come from different preparations: re-run 'swarmtrain data prepare'"
        )


# --- where samples lie ----------------------------------------------------------------------


def samples_in(tokens: int, seq_len: int) -> int:
    """Samples of ``seq_len + 1`` tokens (stride ``seq_len``) a shard of ``tokens`` holds."""
    return max(0, (tokens - 1) // seq_len)


@dataclass(frozen=True)
class SplitLayout:
    """Sample numbering of one split for one ``seq_len``: sample index <-> (shard, first token)."""

    entries: tuple[ShardEntry, ...]
    seq_len: int
    starts: tuple[int, ...]  # first sample index of each shard
    population: Population

    @classmethod
    def build(cls, entries: Sequence[ShardEntry], seq_len: int, shard_tokens: int) -> SplitLayout:
        page = samples_in(shard_tokens, seq_len)
        if page == 0:
            raise ManifestError(
                f"shards of {shard_tokens} tokens hold no sample of seq_len {seq_len}: prepare the "
                f"data with --shard-tokens above {seq_len + 1} (millions are typical)"
            )
        starts, total = [], 0
        for e in entries:
            starts.append(total)
            total += samples_in(e.tokens, seq_len)
        return cls(tuple(entries), seq_len, tuple(starts), Population(total, page=page))

    def locate(self, index: int) -> tuple[int, int]:
        """(shard position, first token offset) of sample ``index``."""
        if not 0 <= index < self.population:
            raise IndexError(f"sample index {index} out of range: the split has {int(self.population)} "
                             f"samples of seq_len {self.seq_len}")
        shard = bisect.bisect_right(self.starts, index) - 1
        return shard, (index - self.starts[shard]) * self.seq_len
