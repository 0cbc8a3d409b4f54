"""The update wire format: chunked top-k, low-bit values, compact indices, error feedback.

A miner's pseudo-gradient is cut into blocks (``chunk`` x ``chunk`` tiles of 2-D tensors;
runs of ``chunk**2`` elements of any other tensor), the largest ``topk`` magnitudes of each
block are kept, their values quantized to ``bits`` bits (sign + magnitude bin, with a
per-tensor table of bin means) and their positions coded as Rice-coded gaps within the
block. ``compress`` returns the values a receiver will decode, so error feedback subtracts
exactly what was sent. ``decode`` checks every field of untrusted bytes and raises only
``CodecError``. The byte layout is specified in docs/codec.md.

Example:
    >>> cfg = CodecConfig()
    >>> delta = {"w": torch.randn(128, 128), "b": torch.randn(128)}
    >>> update = compress(delta, cfg)
    >>> data = encode(update, cfg)
    >>> back = decode(data, {"w": (128, 128), "b": (128,)}, cfg)
    >>> dense = decompress(back, {"w": (128, 128), "b": (128,)})
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from protocol.bitpack import (
    BitstreamError,
    ByteReader,
    pack_fields,
    pack_unary,
    packed_len,
    rice_parameter,
    unpack_fields,
    unpack_unary,
)

MAGIC = b"STUP"
VERSION = 1
RAW_BITS = 32  # bits=32: values sent as exact little-endian float32 (e.g. for aggregates)
_LLOYD_ITERS = 4
_MODE_FULL, _MODE_COUNTS = 0, 1


class CodecError(ValueError):
    """An update cannot be encoded, or received bytes are not a valid update."""


class CodecConfig(BaseModel):
    """Codec parameters; sender and receiver must use equal ones (echoed on the wire).

    Example:
        >>> CodecConfig(chunk=64, topk=64, bits=2).density
        0.015625
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    chunk: int = Field(64, ge=1, le=4096, description="block side; flat tensors use runs of chunk**2")
    topk: int = Field(64, ge=1, description="values kept per full block")
    bits: int = Field(2, ge=1, le=RAW_BITS, description="bits per value: 1..8 quantized, or 32 exact fp32")
    max_payload_bytes: int = Field(1 << 28, ge=16, le=1 << 32, description="decode refuses larger payloads")

    @model_validator(mode="after")
    def _check(self) -> CodecConfig:
        if self.topk > self.chunk * self.chunk:
            raise ValueError(f"topk={self.topk} exceeds the block size chunk**2={self.chunk ** 2}")
        if not (self.bits <= 8 or self.bits == RAW_BITS):
            raise ValueError(f"bits must be 1..8 or {RAW_BITS}, got {self.bits}")
        return self

    @property
    def density(self) -> float:
        return self.topk / (self.chunk * self.chunk)


@dataclass(frozen=True)
class SparseTensor:
    """Kept entries of one tensor: flat positions (int64, CPU) and values (float32, CPU).

    Example:
        >>> st = SparseTensor((2, 3), torch.tensor([1, 5]), torch.tensor([0.5, -0.5]))
        >>> decompress({"w": st}, {"w": (2, 3)})["w"][1, 2].item()
        -0.5
    """

    shape: tuple[int, ...]
    indices: Tensor
    values: Tensor

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparseTensor):
            return NotImplemented
        return (self.shape == other.shape and torch.equal(self.indices, other.indices)
                and torch.equal(self.values, other.values))

    __hash__ = None  # type: ignore[assignment]


SparseUpdate = dict[str, SparseTensor]


# ---------------------------------------------------------------------------- block layout


@dataclass(frozen=True)
class _Layout:
    """How a tensor of ``shape`` is cut into blocks: seen as a (rows, cols) matrix with
    (bh, bw) blocks; a 2-D tensor uses (chunk, chunk), anything else (1, chunk**2)."""

    rows: int
    cols: int
    bh: int
    bw: int
    sizes: np.ndarray  # (nblocks,) real elements per block (edges are smaller)
    widths: np.ndarray  # (nbc,) real width of each block column
    quotas: np.ndarray  # (nblocks,) values kept per block

    @property
    def nbc(self) -> int:
        return len(self.widths)

    @property
    def nblocks(self) -> int:
        return len(self.sizes)


@functools.lru_cache(maxsize=512)
def _layout(shape: tuple[int, ...], chunk: int, topk: int) -> _Layout:
    numel = math.prod(shape)
    rows, cols, bh, bw = (*shape, chunk, chunk) if len(shape) == 2 else (1, numel, 1, chunk * chunk)
    nbr, nbc = -(-rows // bh), -(-cols // bw)
    heights = np.minimum(bh, rows - np.arange(nbr, dtype=np.int64) * bh)
    widths = np.minimum(bw, cols - np.arange(nbc, dtype=np.int64) * bw)
    sizes = np.outer(heights, widths).reshape(-1)
    block = chunk * chunk
    # Same density everywhere: ceil(topk * size / chunk**2), at least 1, at most size.
    quotas = np.minimum(sizes, np.maximum(1, (topk * sizes + block - 1) // block))
    return _Layout(rows, cols, bh, bw, sizes, widths, quotas)


def _to_global(lay: _Layout, block: np.ndarray, local: np.ndarray) -> np.ndarray:
    """(block id, position inside the block's real area) -> flat index into the tensor."""
    br, bc = np.divmod(block, lay.nbc)
    pr, pc = np.divmod(local, lay.widths[bc])
    flat: np.ndarray = (br * lay.bh + pr) * lay.cols + bc * lay.bw + pc
    return flat


def _to_local(lay: _Layout, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat index -> (block id, position inside the block's real area)."""
    row, col = np.divmod(flat, lay.cols)
    br, pr = np.divmod(row, lay.bh)
    bc, pc = np.divmod(col, lay.bw)
    return br * lay.nbc + bc, pr * lay.widths[bc] + pc


def _shape_of(shape: object) -> tuple[int, ...]:
    return tuple(int(d) for d in shape)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- compress


def _block_magnitudes(name: str, mat: Tensor, lay: _Layout) -> Tensor:
    """|mat| rearranged to (nblocks, bh*bw); raises on NaN/Inf (amax propagates both)."""
    mag = mat.abs()
    if not bool(torch.isfinite(mag.amax())):
        raise CodecError(f"tensor {name!r} holds NaN or Inf; refusing to compress it")
    nbr, nbc = -(-lay.rows // lay.bh), lay.nbc
    pad_r, pad_c = nbr * lay.bh - lay.rows, nbc * lay.bw - lay.cols
    if pad_r or pad_c:  # padding gets magnitude -1: never chosen before a real entry
        mag = F.pad(mag, (0, pad_c, 0, pad_r), value=-1.0)
    return mag.view(nbr, lay.bh, nbc, lay.bw).permute(0, 2, 1, 3).reshape(nbr * nbc, lay.bh * lay.bw)


def _topk_blocks(name: str, x: Tensor, lay: _Layout) -> tuple[Tensor, Tensor]:
    """Top-quota entries of every block, in canonical order -> (flat indices, values)."""
    mat = x.reshape(lay.rows, lay.cols)
    nbc = lay.nbc
    mag = _block_magnitudes(name, mat, lay)
    k = int(lay.quotas.max())
    _, pos = torch.topk(mag, k, dim=1, sorted=True)  # (nblocks, k) padded-block positions
    quotas = torch.from_numpy(lay.quotas).to(x.device)
    keep = torch.arange(k, device=x.device) < quotas[:, None]
    # Ascending position within each block; dropped ranks sort last.
    pos = torch.where(keep, pos, lay.bh * lay.bw).sort(dim=1).values
    keep = keep.sort(dim=1, descending=True).values
    pos = pos[keep]
    block = torch.arange(lay.nblocks, device=x.device)[:, None].expand_as(keep)[keep]
    row = (block // nbc) * lay.bh + pos // lay.bw
    col = (block % nbc) * lay.bw + pos % lay.bw
    flat = row * lay.cols + col
    values = mat.reshape(-1)[flat]
    nonzero = values != 0  # exact zeros carry nothing; they are not sent
    return flat[nonzero].cpu(), values[nonzero].float().cpu()


def _lloyd_table(mag: Tensor, levels: int) -> Tensor:
    """``levels`` sorted magnitudes with low squared error: Lloyd-Max from equal-mass bins."""
    if mag.numel() == 0:
        return torch.zeros(levels)
    srt = mag.sort().values.double()
    n = srt.numel()
    bins = (torch.arange(n) * levels) // n  # equal-mass start
    table = torch.full((levels,), float(srt[-1]), dtype=torch.float64)
    for _ in range(_LLOYD_ITERS):
        sums = torch.zeros(levels, dtype=torch.float64).index_add_(0, bins, srt)
        counts = torch.bincount(bins, minlength=levels)
        # An empty bin keeps its previous level (only possible with fewer values than levels).
        table = torch.where(counts > 0, sums / counts.clamp(min=1), table).sort().values
        bins = torch.bucketize(srt, (table[1:] + table[:-1]) / 2)
    return table.float()


def _quantize(values: Tensor, bits: int) -> Tensor:
    """Values as the receiver will see them: sign * table[magnitude bin]."""
    if bits == RAW_BITS:
        return values
    table = _lloyd_table(values.abs(), 1 << (bits - 1))
    edges = (table[1:] + table[:-1]) / 2
    mags = table[torch.bucketize(values.abs(), edges)]
    return torch.where(torch.signbit(values), -mags, mags)


def compress(tensors: Mapping[str, Tensor], cfg: CodecConfig) -> SparseUpdate:
    """Keep each block's top-k magnitudes; values dequantized as receivers will decode them.

    Raises ``CodecError`` on non-finite input.
    """
    out: SparseUpdate = {}
    for name, t in tensors.items():
        x = t.detach().float()
        lay = _layout(tuple(x.shape), cfg.chunk, cfg.topk)
        if x.numel() == 0:
            flat, vals = torch.zeros(0, dtype=torch.int64), torch.zeros(0)
        else:
            flat, vals = _topk_blocks(name, x, lay)
        out[name] = SparseTensor(tuple(x.shape), flat, _quantize(vals, cfg.bits))
    return out


def decompress(update: Mapping[str, SparseTensor], spec: Mapping[str, tuple[int, ...]],
               device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """Dense tensors for every name in ``spec``; a name absent from ``update`` is all zeros."""
    extra = set(update) - set(spec)
    if extra:
        raise CodecError(f"update has tensors not in the spec: {sorted(extra)[:5]}")
    out: dict[str, Tensor] = {}
    for name, shape in spec.items():
        shape = _shape_of(shape)
        dense = torch.zeros(math.prod(shape), dtype=torch.float32, device=device)
        st = update.get(name)
        if st is not None:
            if st.shape != shape:
                raise CodecError(f"tensor {name!r}: update shape {st.shape} != spec shape {shape}")
            dense[st.indices.to(device)] = st.values.to(device)
        out[name] = dense.view(shape)
    return out


# ---------------------------------------------------------------------------- encode


@dataclass(frozen=True)
class _Record:
    """One tensor's encoded sections (see docs/codec.md)."""

    head: bytes  # name, shape, count, mode, rice p
    index: bytes  # counts (mode 1), low bits, unary length + high bits
    value: bytes  # table + codes, or raw fp32


def _header(cfg: CodecConfig, n_tensors: int) -> bytes:
    return MAGIC + struct.pack("<BIIBI", VERSION, cfg.chunk, cfg.topk, cfg.bits, n_tensors)


def _canonical(name: str, st: SparseTensor, lay: _Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(block, local, values) sorted by (block, local), after checking indices and values."""
    flat = st.indices.detach().cpu().numpy().astype(np.int64, copy=False)
    vals = st.values.detach().cpu().float().numpy()
    numel = lay.rows * lay.cols
    if flat.shape != vals.shape or flat.ndim != 1:
        raise CodecError(f"tensor {name!r}: indices and values must be 1-D of equal length")
    if flat.size and (flat.min() < 0 or flat.max() >= numel):
        raise CodecError(f"tensor {name!r}: index out of range [0, {numel})")
    if not np.isfinite(vals).all():
        raise CodecError(f"tensor {name!r}: non-finite value")
    block, local = _to_local(lay, flat)
    order = np.lexsort((local, block))
    block, local, vals = block[order], local[order], vals[order]
    if np.any((np.diff(block) == 0) & (np.diff(local) == 0)):
        raise CodecError(f"tensor {name!r}: duplicate index")
    return block, local, vals


def _index_section(block: np.ndarray, local: np.ndarray, lay: _Layout) -> tuple[int, int, bytes]:
    """-> (mode, rice p, bytes) for positions sorted by (block, local)."""
    counts = np.bincount(block, minlength=lay.nblocks)
    if np.any(counts > lay.quotas):
        raise CodecError(f"a block holds {int((counts - lay.quotas).max())} values over its quota")
    mode = _MODE_FULL if np.array_equal(counts, lay.quotas) else _MODE_COUNTS
    first = np.ones(len(block), dtype=bool)
    first[1:] = block[1:] != block[:-1]
    gaps = np.where(first, local, local - np.roll(local, 1) - 1)
    p = rice_parameter(gaps)
    high = pack_unary(gaps >> p)
    body = pack_fields(counts, _count_width(lay)) if mode == _MODE_COUNTS else b""
    body += pack_fields(gaps & ((1 << p) - 1), p) + struct.pack("<I", len(high)) + high
    return mode, p, body


def _count_width(lay: _Layout) -> int:
    return int(lay.quotas.max()).bit_length() if lay.nblocks else 0


def _value_section(name: str, vals: np.ndarray, bits: int) -> bytes:
    if bits == RAW_BITS:
        return vals.astype("<f4").tobytes()
    levels = 1 << (bits - 1)
    mags = np.unique(np.abs(vals))
    if len(mags) > levels:
        raise CodecError(f"tensor {name!r}: {len(mags)} distinct magnitudes exceed {levels} levels "
                         f"of {bits}-bit values (values must come from compress)")
    table = np.concatenate([mags, np.full(levels - len(mags), mags[-1] if len(mags) else 0.0)])
    codes = np.searchsorted(mags, np.abs(vals)) | (np.signbit(vals).astype(np.int64) << (bits - 1))
    return table.astype("<f4").tobytes() + pack_fields(codes, bits)


def _encode_tensor(name: str, st: SparseTensor, cfg: CodecConfig) -> _Record:
    lay = _layout(st.shape, cfg.chunk, cfg.topk)
    block, local, vals = _canonical(name, st, lay)
    mode, p, index = _index_section(block, local, lay)
    name_b = name.encode("utf-8")
    if not 0 < len(name_b) <= 0xFFFF or len(st.shape) > 0xFF or any(d > 0xFFFFFFFF for d in st.shape):
        raise CodecError(f"tensor {name!r}: name, rank or a dimension does not fit the format")
    head = struct.pack("<H", len(name_b)) + name_b + struct.pack(f"<B{len(st.shape)}I", len(st.shape), *st.shape)
    head += struct.pack("<IBB", len(vals), mode, p)
    return _Record(head, index, _value_section(name, vals, cfg.bits))


def encode(update: Mapping[str, SparseTensor], cfg: CodecConfig) -> bytes:
    """Serialize ``update`` (tensor order kept; entries in canonical order)."""
    records = [_encode_tensor(name, st, cfg) for name, st in update.items()]
    data = b"".join([_header(cfg, len(records)), *(r.head + r.index + r.value for r in records)])
    if len(data) > cfg.max_payload_bytes:
        raise CodecError(f"encoded update is {len(data)} bytes, over max_payload_bytes={cfg.max_payload_bytes}")
    return data


def payload_stats(update: Mapping[str, SparseTensor], cfg: CodecConfig) -> dict[str, int]:
    """Encoded size split into header, index and value bytes, and the number of values."""
    records = [_encode_tensor(name, st, cfg) for name, st in update.items()]
    return {
        "header_bytes": len(_header(cfg, len(records))) + sum(len(r.head) for r in records),
        "index_bytes": sum(len(r.index) for r in records),
        "value_bytes": sum(len(r.value) for r in records),
        "values": sum(len(st.values) for st in update.values()),
    }


# ---------------------------------------------------------------------------- decode


def _read_header(r: ByteReader, cfg: CodecConfig, n_spec: int) -> None:
    if r.take(4, "magic") != MAGIC:
        raise CodecError("not a swarmtrain update (bad magic)")
    version, chunk, topk, bits, n = r.unpack("BIIBI", "header")
    if version != VERSION:
        raise CodecError(f"unsupported codec version {version} (this node speaks {VERSION})")
    if (chunk, topk, bits) != (cfg.chunk, cfg.topk, cfg.bits):
        raise CodecError(f"codec config mismatch: payload chunk={chunk} topk={topk} bits={bits}, "
                         f"expected chunk={cfg.chunk} topk={cfg.topk} bits={cfg.bits}")
    if n != n_spec:
        raise CodecError(f"payload has {n} tensors, the model has {n_spec}")


def _read_name_shape(r: ByteReader, spec: Mapping[str, tuple[int, ...]], seen: set[str]) -> tuple[str, tuple[int, ...]]:
    (name_len,) = r.unpack("H", "name length")
    try:
        name = r.take(name_len, "name").decode("utf-8")
    except UnicodeDecodeError as e:
        raise CodecError("tensor name is not UTF-8") from e
    if name not in spec or name in seen:
        raise CodecError(f"unexpected or duplicate tensor {name!r}")
    seen.add(name)
    (ndim,) = r.unpack("B", "rank")
    shape = r.unpack(f"{ndim}I", "shape")
    if shape != spec[name]:
        raise CodecError(f"tensor {name!r}: shape {shape} != expected {spec[name]}")
    return name, shape


def _read_counts(r: ByteReader, lay: _Layout, mode: int, n: int, name: str) -> np.ndarray:
    if mode == _MODE_FULL:
        counts = lay.quotas
    elif mode == _MODE_COUNTS:
        w = _count_width(lay)
        counts = unpack_fields(r.take(packed_len(lay.nblocks, w), "block counts"), lay.nblocks, w)
        if np.any(counts > lay.quotas):
            raise CodecError(f"tensor {name!r}: a block count exceeds its quota")
    else:
        raise CodecError(f"tensor {name!r}: unknown count mode {mode}")
    if int(counts.sum()) != n:
        raise CodecError(f"tensor {name!r}: block counts sum to {int(counts.sum())}, header says {n}")
    return counts


def _read_positions(r: ByteReader, lay: _Layout, counts: np.ndarray, p: int, name: str) -> np.ndarray:
    n = int(counts.sum())
    max_size = int(lay.sizes.max()) if lay.nblocks else 0
    if p > max(max_size - 1, 0).bit_length():
        raise CodecError(f"tensor {name!r}: rice parameter {p} too large")
    low = unpack_fields(r.take(packed_len(n, p), "index low bits"), n, p)
    (high_len,) = r.unpack("I", "index stream length")
    # sum(q) <= sum(gaps) >> p <= numel >> p, plus one terminator per value.
    if high_len > packed_len(n + ((lay.rows * lay.cols) >> p), 1):
        raise CodecError(f"tensor {name!r}: index stream longer than any valid one")
    q = unpack_unary(r.take(high_len, "index high bits"), n)
    if q.size and int(q.max()) > (max_size >> p):
        raise CodecError(f"tensor {name!r}: index gap out of range")
    block = np.repeat(np.arange(lay.nblocks, dtype=np.int64), counts)
    # Position = (running sum of gap + 1 within the block) - 1.
    steps = np.concatenate([[0], np.cumsum((q << p) + low + 1)])
    starts = np.cumsum(counts) - counts  # index of each block's first value
    local = steps[1:] - steps[starts][block] - 1
    if n and np.any(local >= lay.sizes[block]):
        raise CodecError(f"tensor {name!r}: index outside its block")
    return _to_global(lay, block, local)


def _read_values(r: ByteReader, n: int, bits: int, name: str) -> np.ndarray:
    if bits == RAW_BITS:
        vals = np.frombuffer(r.take(4 * n, "values"), dtype="<f4")
    else:
        table = np.frombuffer(r.take(4 << (bits - 1), "value table"), dtype="<f4")
        if not np.isfinite(table).all() or np.any(table < 0):
            raise CodecError(f"tensor {name!r}: value table must be finite and non-negative")
        codes = unpack_fields(r.take(packed_len(n, bits), "values"), n, bits)
        mags = table[codes & ((1 << (bits - 1)) - 1)]
        vals = np.where(codes >> (bits - 1) == 1, -mags, mags)
    if not np.isfinite(vals).all():
        raise CodecError(f"tensor {name!r}: non-finite value")
    return vals.astype(np.float32)


def _read_tensor(r: ByteReader, spec: Mapping[str, tuple[int, ...]], seen: set[str],
                 cfg: CodecConfig) -> tuple[str, SparseTensor]:
    name, shape = _read_name_shape(r, spec, seen)
    n, mode, p = r.unpack("IBB", "tensor counts")
    lay = _layout(shape, cfg.chunk, cfg.topk)
    counts = _read_counts(r, lay, mode, n, name)
    flat = _read_positions(r, lay, counts, p, name)
    vals = _read_values(r, n, cfg.bits, name)
    return name, SparseTensor(shape, torch.from_numpy(flat.astype(np.int64)), torch.from_numpy(vals))


def decode(data: bytes, spec: Mapping[str, tuple[int, ...]], cfg: CodecConfig) -> SparseUpdate:
    """Parse and fully validate untrusted bytes against the model's ``spec``.

    Raises ``CodecError`` (and nothing else) if anything is off.
    """
    if len(data) > cfg.max_payload_bytes:
        raise CodecError(f"payload is {len(data)} bytes, over max_payload_bytes={cfg.max_payload_bytes}")
    spec = {name: _shape_of(shape) for name, shape in spec.items()}
    r, seen = ByteReader(bytes(data)), set[str]()
    try:
        _read_header(r, cfg, len(spec))
        update = dict(_read_tensor(r, spec, seen, cfg) for _ in range(len(spec)))
    except BitstreamError as e:
        raise CodecError(str(e)) from e
    except (struct.error, OverflowError, IndexError, MemoryError) as e:  # belt and braces
        raise CodecError(f"malformed payload: {e}") from e
    if r.pos != len(data):
        raise CodecError(f"{len(data) - r.pos} trailing bytes after the last tensor")
    return update


# ---------------------------------------------------------------------------- error feedback


class ErrorFeedback:
    """Residual memory: ``e <- beta*e + delta; p = compress(e); e <- e - decompress(p)``.

    Example:
        >>> ef = ErrorFeedback(beta=0.95)
        >>> update = ef.step({"w": torch.randn(64, 64)}, CodecConfig())
        >>> residual = ef.state_dict()["w"]
    """

    def __init__(self, beta: float = 0.95) -> None:
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.beta = beta
        self.error: dict[str, Tensor] = {}

    def step(self, delta: Mapping[str, Tensor], cfg: CodecConfig) -> SparseUpdate:
        for name, d in delta.items():
            d = d.detach().float()
            e = self.error.get(name)
            self.error[name] = d.clone() if e is None else e.mul_(self.beta).add_(d.to(e.device))
        current = {name: self.error[name] for name in delta}
        update = compress(current, cfg)
        for name, e in current.items():
            st = update[name]
            e.view(-1)[st.indices.to(e.device)] -= st.values.to(e.device)
        return update

    def state_dict(self) -> dict[str, Tensor]:
        return {name: e.detach().cpu().clone() for name, e in self.error.items()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.error = {name: t.detach().float().clone() for name, t in state.items()}


# ---------------------------------------------------------------------------- similarity


def _pairs(a: Mapping[str, SparseTensor], b: Mapping[str, SparseTensor]) -> Iterator[tuple[np.ndarray, ...]]:
    """(indices_a, values_a, indices_b, values_b) for each tensor name both hold."""
    for name in a.keys() & b.keys():
        yield a[name].indices.numpy(), a[name].values.numpy(), b[name].indices.numpy(), b[name].values.numpy()


def index_overlap(a: Mapping[str, SparseTensor], b: Mapping[str, SparseTensor]) -> float:
    """Jaccard similarity of the kept positions, pooled over all tensors (0 if both empty)."""
    shared = union = 0
    for ia, _, ib, _ in _pairs(a, b):
        common = len(np.intersect1d(ia, ib, assume_unique=True))
        shared, union = shared + common, union + len(ia) + len(ib) - common
    for name in a.keys() ^ b.keys():
        union += len((a.get(name) or b[name]).indices)
    return shared / union if union else 0.0


def cosine(a: Mapping[str, SparseTensor], b: Mapping[str, SparseTensor]) -> float:
    """Cosine similarity of the two sparse vectors (0 if either is zero)."""
    dot = 0.0
    for ia, va, ib, vb in _pairs(a, b):
        _, ja, jb = np.intersect1d(ia, ib, assume_unique=True, return_indices=True)
        dot += float(np.dot(va[ja].astype(np.float64), vb[jb].astype(np.float64)))
    na = math.sqrt(sum(float((st.values.double() ** 2).sum()) for st in a.values()))
    nb = math.sqrt(sum(float((st.values.double() ** 2).sum()) for st in b.values()))
    return dot / (na * nb) if na > 0 and nb > 0 else 0.0
