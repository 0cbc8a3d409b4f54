"""Token data every node trains and evaluates on: tokenizer, datasets, sources, identity.

Sources (see ``open_dataset``):

* ``"builtin"`` — the Python standard library's ``.py`` sources as byte tokens, built
  once into a cached ``.npy`` file. Needs no download; differs between Python versions.
* a filesystem path — pre-tokenized shards: a ``.npy`` file, a raw ``.bin`` file
  (uint16, or uint32), a directory with ``train.bin``/``val.bin`` (nanoGPT layout), or a
  directory of shards concatenated in sorted order.
* ``"hf:NAME"`` or ``"hf:NAME:SPLIT"`` — a Hugging Face dataset's text, byte-tokenized
  (needs the ``hf`` extra and network access; never used unless asked for).

A dataset's identity is its ``content_hash`` (sha256 over a canonical header and the
train and val tokens), which the subnet config pins; ``verify_dataset`` checks it.

These sources are loaded whole. A corpus prepared by ``swarmtrain data prepare`` (token
shards + manifest, fetched shard by shard) is ``node.sharded_dataset.ShardedDataset``;
both satisfy ``Dataset``, the API miners and validators use.

Example:
    >>> ds = TokenDataset.from_arrays("toy", np.arange(100, dtype=np.uint16), np.arange(20, dtype=np.uint16))
    >>> ds.num_samples(seq_len=8), tuple(ds.batch([0, 3], seq_len=8).shape)
    (12, (2, 9))
"""

from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from protocol.errors import DataError, DatasetMismatchError, DataSourceError
from protocol.files import atomic_file

__all__ = ["DataError", "DataSourceError", "DatasetMismatchError"]  # re-exported: their home is protocol.errors

BOS = 256
EOS = 257
PAD = 258
VOCAB_SIZE = 264  # 256 bytes + specials, padded to a multiple of 8
DEFAULT_MAX_BYTES = 8_000_000
DEFAULT_VAL_FRACTION = 0.05
_BUILTIN_FORMAT = "v1"  # bump when the builtin corpus recipe changes
_SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})
_TOKEN_DTYPES = (np.dtype("<u2"), np.dtype("<u4"))

Split = Literal["train", "val"]


# --- tokenizer -------------------------------------------------------------------------


def encode(text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
    """UTF-8 bytes of ``text`` as token ids, optionally framed by BOS/EOS."""
    ids = list(text.encode("utf-8"))
    return ([BOS] if bos else []) + ids + ([EOS] if eos else [])


def decode(ids: Iterable[int]) -> str:
    """Inverse of ``encode``: special tokens are dropped, invalid UTF-8 becomes U+FFFD."""
    return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")


# --- dataset ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TokenDataset:
    """Train and val token streams (1-D uint16/uint32 arrays) and their content hash.

    Sample ``i`` of a split is ``tokens[i*seq_len : i*seq_len + seq_len + 1]`` (inputs and
    shifted targets of one sequence).

    Example:
        >>> ds = TokenDataset.from_arrays("toy", np.arange(10, dtype=np.uint16), np.arange(5, dtype=np.uint16))
        >>> ds.batch([1], seq_len=4).tolist()
        [[4, 5, 6, 7, 8]]
    """

    name: str
    train: np.ndarray
    val: np.ndarray
    content_hash: str

    def __post_init__(self) -> None:
        for split in ("train", "val"):
            arr = getattr(self, split)
            if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype not in _TOKEN_DTYPES:
                raise ValueError(f"{split} must be a 1-D little-endian uint16/uint32 array")

    @classmethod
    def from_arrays(cls, name: str, train: np.ndarray, val: np.ndarray) -> TokenDataset:
        """Build a dataset, normalizing dtypes and computing ``content_hash``."""
        train, val = _as_tokens(train, "train"), _as_tokens(val, "val")
        if train.dtype != val.dtype:  # one dtype per dataset keeps the hash canonical
            train, val = train.astype("<u4"), val.astype("<u4")
        return cls(name, train, val, content_hash(train, val))

    def tokens(self, split: Split = "train") -> np.ndarray:
        if split == "train":
            return self.train
        if split == "val":
            return self.val
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")

    def num_samples(self, seq_len: int, split: Split = "train") -> int:
        """How many samples of ``seq_len + 1`` tokens (stride ``seq_len``) the split holds."""
        _check_seq_len(seq_len)
        return max(0, (len(self.tokens(split)) - 1) // seq_len)

    def batch(self, indices: Sequence[int], seq_len: int, split: Split = "train") -> torch.Tensor:
        """Samples ``indices`` stacked into a LongTensor of shape (B, seq_len + 1)."""
        n = self.num_samples(seq_len, split)
        idx = as_indices(indices)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            bad = int(idx[(idx < 0) | (idx >= n)][0])
            raise IndexError(f"sample index {bad} out of range: the {split} split has {n} samples of seq_len {seq_len}")
        positions = idx[:, None] * seq_len + np.arange(seq_len + 1)  # (B, seq_len+1)
        return torch.from_numpy(np.asarray(self.tokens(split)[positions], dtype=np.int64))

    def max_token(self) -> int:
        """Largest token id present (the model's vocabulary must exceed it)."""
        return int(max((int(a.max()) for a in (self.train, self.val) if a.size), default=-1))

    def shards_for(self, indices: Sequence[int], seq_len: int, split: Split = "train") -> list[str]:
        """Shard files these samples need but this node lacks: none (the tokens are all local)."""
        return []

    def prefetch(self, indices: Sequence[int], seq_len: int, split: Split = "train") -> list[str]:
        """Fetch what ``batch(indices, ...)`` will need: nothing here (see ShardedDataset)."""
        return []


class Dataset(Protocol):
    """What miners and validators use of a dataset: a ``TokenDataset`` (all tokens local)
    or a ``node.sharded_dataset.ShardedDataset`` (shards fetched on demand)."""

    @property
    def name(self) -> str: ...

    @property
    def content_hash(self) -> str: ...

    def num_samples(self, seq_len: int, split: Split = "train") -> int: ...

    def batch(self, indices: Sequence[int], seq_len: int, split: Split = "train") -> torch.Tensor: ...

    def max_token(self) -> int: ...

    def shards_for(self, indices: Sequence[int], seq_len: int, split: Split = "train") -> list[str]: ...

    def prefetch(self, indices: Sequence[int], seq_len: int, split: Split = "train") -> list[str]: ...


def as_indices(indices: Sequence[int]) -> np.ndarray:
    """Sample indices as a 1-D int64 array; floats and bools are refused, not truncated."""
    raw = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices))
    if raw.size == 0:
        return np.zeros(0, dtype=np.int64)
    if raw.ndim != 1 or raw.dtype.kind not in "iu":
        raise ValueError(f"sample indices must be a flat sequence of ints, got {raw.dtype} with shape {raw.shape}")
    return raw.astype(np.int64)


def _check_seq_len(seq_len: int) -> None:
    if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive int, got {seq_len!r}")


def content_hash(train: np.ndarray, val: np.ndarray) -> str:
    """sha256 hex over ``dtype | len(train) | len(val)`` and the little-endian token bytes."""
    header = f"swarmtrain-tokens/1|{train.dtype.str}|{len(train)}|{len(val)}\n"
    h = hashlib.sha256(header.encode())
    for arr in (train, val):
        for start in range(0, len(arr), 1 << 22):  # chunks keep memory flat for memmaps
            h.update(np.ascontiguousarray(arr[start : start + (1 << 22)]).tobytes())
    return h.hexdigest()


class DatasetSpec(BaseModel):
    """The dataset a subnet pins: a name (informative) and the content hash (binding).

    Example:
        >>> DatasetSpec(name="builtin", content_hash="ab" * 32).content_hash[:4]
        'abab'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=512)
    content_hash: str = Field(pattern=r"^([0-9a-f]{64})?$", description="empty: not pinned (devnets)")


def verify_dataset(ds: Dataset, spec: DatasetSpec) -> None:
    """Raise ``DatasetMismatchError`` unless ``ds`` has the spec's hash (an empty one pins nothing)."""
    if not spec.content_hash or ds.content_hash == spec.content_hash:
        return
    raise DatasetMismatchError(
        f"dataset {ds.name!r} has content hash {ds.content_hash}, but the subnet expects "
        f"{spec.content_hash} (dataset {spec.name!r}). Every node must train on identical "
        "tokens: use the subnet's dataset source; the 'builtin' corpus differs between Python "
        f"versions (this node runs Python {_python_tag()}), so run the Python version the "
        "subnet was configured with, or pin a shared token shard instead."
    )


def open_dataset(source: str, cache_dir: str | Path | None = None) -> TokenDataset:
    """Open ``"builtin"``, ``"hf:NAME[:SPLIT]"`` or a filesystem path of token shards."""
    if source == "builtin":
        return builtin_corpus(cache_dir)
    if source.startswith("hf:"):
        name, _, split = source[3:].partition(":")
        return load_hf_dataset(name, split=split or "train", cache_dir=cache_dir)
    if not Path(source).exists():
        raise DataSourceError(
            f"dataset source {source!r} is not 'builtin', 'hf:NAME' or an existing path"
        )
    return load_token_shards(source)


# --- token shards on disk ----------------------------------------------------------------


def load_token_shards(
    path: str | Path, dtype: str | None = None, val_fraction: float = DEFAULT_VAL_FRACTION
) -> TokenDataset:
    """Load a ``.npy``/``.bin`` shard, a ``train.bin``+``val.bin`` directory, or a directory of shards.

    ``.bin`` files are raw little-endian tokens, uint16 unless ``dtype="uint32"``. Without an
    explicit val file the last ``val_fraction`` of the tokens is the val split.
    """
    path = Path(path)
    if path.is_dir():
        pair = [path / f"{s}.bin" for s in ("train", "val")]
        if all(p.is_file() for p in pair):
            train, val = (_read_shard(p, dtype) for p in pair)
            return TokenDataset.from_arrays(path.name, train, val)
        shards = sorted(p for p in path.iterdir() if p.suffix in (".npy", ".bin") and p.is_file())
        if not shards:
            raise DataSourceError(f"no .npy or .bin token shards in directory {path}")
        tokens = np.concatenate([_read_shard(p, dtype) for p in shards])
    elif path.is_file():
        tokens = _read_shard(path, dtype)
    else:
        raise DataSourceError(f"token shard path {path} does not exist")
    train, val = _split_at(tokens, len(tokens) - _val_len(len(tokens), val_fraction))
    return TokenDataset.from_arrays(path.name, train, val)


def _read_shard(path: Path, dtype: str | None) -> np.ndarray:
    if path.suffix == ".npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataSourceError(f"cannot read token shard {path}: {e}") from e
        return _as_tokens(arr, str(path))
    if path.suffix == ".bin":
        if dtype not in (None, "uint16", "uint32"):
            raise DataSourceError(f"dtype must be 'uint16' or 'uint32', got {dtype!r}")
        dt = np.dtype("<u4" if dtype == "uint32" else "<u2")
        if path.stat().st_size % dt.itemsize:
            raise DataSourceError(f"{path} size is not a multiple of {dt.itemsize} bytes ({dt.name})")
        if path.stat().st_size == 0:
            return np.zeros(0, dtype=dt)
        return np.memmap(path, dtype=dt, mode="r")
    raise DataSourceError(f"unsupported token shard {path}: expected .npy or .bin")


def _as_tokens(arr: np.ndarray, what: str) -> np.ndarray:
    """A 1-D little-endian uint16/uint32 view or copy of an integer array."""
    arr = np.asarray(arr)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise DataSourceError(f"{what}: expected a 1-D integer token array, got {arr.dtype} with shape {arr.shape}")
    if arr.dtype in _TOKEN_DTYPES:
        return arr
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= 2**32):
        raise DataSourceError(f"{what}: token ids must lie in [0, 2**32)")
    big = arr.size and int(arr.max()) >= 2**16
    return arr.astype("<u4" if big else "<u2")


def _val_len(n: int, val_fraction: float) -> int:
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    return max(1, int(n * val_fraction)) if n > 1 else 0


def _split_at(tokens: np.ndarray, cut: int) -> tuple[np.ndarray, np.ndarray]:
    return tokens[:cut], tokens[cut:]


# --- the built-in corpus ----------------------------------------------------------------


def builtin_corpus(cache_dir: str | Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> TokenDataset:
    """Byte tokens of the stdlib's ``.py`` files (each followed by EOS), cached as ``.npy``.

    The last ~5% (cut at a document boundary) is the val split.
    """
    if max_bytes < 2:
        raise ValueError(f"max_bytes must be at least 2, got {max_bytes}")
    path = _cache_dir(cache_dir) / f"builtin-{_BUILTIN_FORMAT}-{_python_tag()}-{max_bytes}.npy"
    tokens = _load_cached(path)
    if tokens is None:
        tokens = build_builtin_tokens(max_bytes)
        _save_atomic(path, tokens)
    train, val = _split_at(tokens, _document_cut(tokens, DEFAULT_VAL_FRACTION))
    return TokenDataset.from_arrays("builtin", train, val)


def build_builtin_tokens(max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Concatenate stdlib sources + EOS in sorted path order, stopping before ``max_bytes``."""
    return _pack_documents((p.read_bytes() for p in stdlib_sources()), max_bytes)


def stdlib_sources() -> list[Path]:
    """The stdlib's ``.py`` files, sorted by relative path, without tests and site-packages."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]  # prune in place
        for fname in filenames:
            if fname.endswith(".py"):
                full = Path(dirpath) / fname
                found.append((full.relative_to(root).as_posix(), full))
    return [p for _, p in sorted(found)]


def _pack_documents(docs: Iterable[bytes], max_bytes: int) -> np.ndarray:
    """Documents as bytes + EOS, whole documents only, at most ``max_bytes`` tokens."""
    parts: list[np.ndarray] = []
    total = 0
    for doc in docs:
        if total + len(doc) + 1 > max_bytes:
            break
        parts.append(np.frombuffer(doc, dtype=np.uint8).astype("<u2"))
        parts.append(np.array([EOS], dtype="<u2"))
        total += len(doc) + 1
    if not parts:
        raise DataSourceError(f"no document fits in max_bytes={max_bytes}")
    return np.concatenate(parts)


def _document_cut(tokens: np.ndarray, val_fraction: float) -> int:
    """Split point: just after the first EOS at or past ``len * (1 - val_fraction)``."""
    target = len(tokens) - _val_len(len(tokens), val_fraction)
    eos = np.flatnonzero(tokens[target:] == EOS)
    cut = target + int(eos[0]) + 1 if eos.size else target
    return cut if cut < len(tokens) else target  # keep val non-empty


def cache_root() -> Path:
    """Where derived data is cached: ``$SWARMTRAIN_CACHE``, else ``~/.cache/swarmtrain``."""
    return _cache_dir(None)


def _cache_dir(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("SWARMTRAIN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "swarmtrain"


def _load_cached(path: Path) -> np.ndarray | None:
    """The cached token array, or None if absent or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return arr if arr.ndim == 1 and arr.dtype in _TOKEN_DTYPES else None


def _save_atomic(path: Path, tokens: np.ndarray) -> None:
    """Write the cache crash-safely (``protocol.files``): readers never see half a file."""
    with atomic_file(path) as f:
        np.save(f, tokens, allow_pickle=False)


def _python_tag() -> str:
    v = sys.version_info
    return f"{sys.implementation.name}{v.major}.{v.minor}.{v.micro}"


# --- Hugging Face datasets (optional extra) ----------------------------------------------


def load_hf_dataset(
    name: str,
    split: str = "train",
    text_field: str = "text",
    max_bytes: int = DEFAULT_MAX_BYTES,
    cache_dir: str | Path | None = None,
) -> TokenDataset:
    """Byte-tokenize the first ``max_bytes`` of a Hugging Face dataset's text (streamed, cached).

    Needs ``pip install 'swarmtrain[hf]'`` and network access the first time.
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{name}-{split}-{text_field}")
    path = _cache_dir(cache_dir) / f"hf-{_BUILTIN_FORMAT}-{safe}-{max_bytes}.npy"
    tokens = _load_cached(path)
    if tokens is None:
        tokens = _pack_documents(_hf_texts(name, split, text_field), max_bytes)
        _save_atomic(path, tokens)
    train, val = _split_at(tokens, _document_cut(tokens, DEFAULT_VAL_FRACTION))
    return TokenDataset.from_arrays(f"hf:{name}", train, val)


def _hf_texts(name: str, split: str, text_field: str) -> Iterator[bytes]:
    try:
        import datasets  # optional extra: imported only when a HF source is asked for
    except ImportError as e:
        raise DataSourceError(
            f"dataset 'hf:{name}' needs the Hugging Face 'datasets' package: pip install 'swarmtrain[hf]'"
        ) from e
    try:
        stream = datasets.load_dataset(name, split=split, streaming=True)
        for row in stream:
            yield str(row[text_field]).encode("utf-8")
    except KeyError as e:
        raise DataSourceError(f"dataset 'hf:{name}' rows have no text field {text_field!r}") from e
    except Exception as e:  # noqa: BLE001 - the hub client raises many types; re-raised as ours
        raise DataSourceError(
            f"cannot load dataset 'hf:{name}' (split {split!r}): {type(e).__name__}: {e}. "
            "Check the name and the network (or HF_DATASETS_OFFLINE with a local cache)."
        ) from e
