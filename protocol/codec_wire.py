"""The update codec's bytes (wire format version 2): ``encode``, ``decode``, ``payload_stats``.

Tensors travel in the model's parameter order without names or shapes (an 8-byte digest
of the parameter list in the header pins them). Positions are coded per *line* (row or
column of the tensor, whichever is cheaper): each line's count, then the gaps between its
positions, Rice-coded with a parameter derived from the line's count, so dense lines and
sparse lines each cost what they hold. Values are sign + magnitude code from a per-tensor
table. Every field is specified byte by byte in docs/codec.md; ``decode`` checks all of
them on untrusted input and raises only ``CodecError``.

Example:
    >>> from protocol.codec import compress
    >>> cfg = CodecConfig(chunk=4, topk=2, bits=2)
    >>> update = compress({"w": torch.randn(8, 8)}, cfg)
    >>> decode(encode(update, cfg), {"w": (8, 8)}, cfg) == update
    True
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from protocol.bitpack import (
    BitReader,
    BitstreamError,
    BitWriter,
    ByteReader,
    read_rice,
    rice_parameter,
    varint,
    write_rice,
)
from protocol.sparse import (
    RAW_BITS,
    CodecConfig,
    CodecError,
    Layout,
    SparseTensor,
    SparseUpdate,
    layout,
    shape_of,
)

MAGIC = b"STUP"
VERSION = 2
_SPEC_DOMAIN = b"swarmtrain-codec-spec/2"
_ROWS, _COLS = 0, 1  # orientation flag: positions coded along rows or along columns


def spec_digest(spec: Mapping[str, tuple[int, ...]]) -> bytes:
    """8 bytes pinning the parameter list (names, shapes, order) a payload was made for."""
    h = hashlib.sha256(_SPEC_DOMAIN)
    for name, shape in spec.items():
        name_b = name.encode("utf-8")
        h.update(struct.pack("<I", len(name_b)) + name_b + struct.pack(f"<I{len(shape)}Q", len(shape), *shape))
    return h.digest()[:8]


def _bit_length(x: np.ndarray) -> np.ndarray:
    """Exact integer bit_length of each non-negative entry (no float log)."""
    x = np.asarray(x, dtype=np.int64).copy()
    out = np.zeros(x.shape, dtype=np.int64)
    while x.any():
        out += x > 0
        x >>= 1
    return out


def _gap_parameters(counts: np.ndarray, length: int) -> np.ndarray:
    """Rice parameter of each non-empty line: floor(log2(length // count))."""
    return _bit_length(length // counts) - 1


# ---------------------------------------------------------------------------- lines


@dataclass(frozen=True)
class _Lines:
    """Positions of one tensor along one orientation, sorted by (line, position)."""

    orient: int
    n_lines: int
    length: int  # entries per line
    line: np.ndarray
    pos: np.ndarray
    order: np.ndarray  # permutation from ascending flat order to (line, pos) order

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.line, minlength=self.n_lines)

    def gaps(self) -> np.ndarray:
        first = np.ones(len(self.line), dtype=bool)
        first[1:] = self.line[1:] != self.line[:-1]
        gaps: np.ndarray = np.where(first, self.pos, self.pos - np.roll(self.pos, 1) - 1)
        return gaps

    def gap_parameters(self) -> np.ndarray:
        counts = self.counts
        per_line = np.zeros(self.n_lines, dtype=np.int64)
        full = counts > 0
        per_line[full] = _gap_parameters(counts[full], self.length)
        per_value: np.ndarray = per_line[self.line]
        return per_value

    def bits(self) -> int:
        """Index bits this orientation costs (counts and gaps, Rice-coded)."""
        counts, gaps, p = self.counts, self.gaps(), self.gap_parameters()
        pc = rice_parameter(counts)
        return int((counts >> pc).sum()) + self.n_lines * (pc + 1) + int((gaps >> p).sum() + p.sum()) + len(gaps)


def _lines(lay: Layout, flat: np.ndarray, orient: int) -> _Lines:
    row, col = np.divmod(flat, lay.cols)
    if orient == _ROWS:
        return _Lines(_ROWS, lay.rows, lay.cols, row, col, np.arange(len(flat)))
    order = np.lexsort((row, col))
    return _Lines(_COLS, lay.cols, lay.rows, col[order], row[order], order)


def _orientations(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (_ROWS, _COLS) if len(shape) == 2 and min(shape) > 1 else (_ROWS,)


# ---------------------------------------------------------------------------- encode


@dataclass(frozen=True)
class _Record:
    """One tensor's bytes and how its bits split (for ``payload_stats``)."""

    data: bytes
    index_bits: int
    value_bits: int


def _canonical(name: str, st: SparseTensor, lay: Layout) -> tuple[np.ndarray, np.ndarray]:
    """(flat indices ascending, values in the same order) after checking both."""
    flat = st.indices.detach().cpu().numpy().astype(np.int64, copy=False)
    vals = st.values.detach().cpu().float().numpy()
    if flat.shape != vals.shape or flat.ndim != 1:
        raise CodecError(f"tensor {name!r}: indices and values must be 1-D of equal length")
    if flat.size and (flat.min() < 0 or flat.max() >= lay.numel):
        raise CodecError(f"tensor {name!r}: index out of range [0, {lay.numel})")
    if not np.isfinite(vals).all():
        raise CodecError(f"tensor {name!r}: non-finite value")
    order = np.argsort(flat, kind="stable")
    flat, vals = flat[order], vals[order]
    if np.any(np.diff(flat) == 0):
        raise CodecError(f"tensor {name!r}: duplicate index")
    if np.any(np.bincount(lay.block_of(flat), minlength=lay.nblocks) > lay.quotas):
        raise CodecError(f"tensor {name!r}: a block holds more values than its quota")
    return flat, vals


def _value_codes(name: str, vals: np.ndarray, bits: int) -> tuple[bytes, np.ndarray]:
    """(table bytes, one code per value): sign bit on top of a magnitude-level index."""
    if bits == RAW_BITS:
        return b"", vals.astype("<f4").view("<u4").astype(np.int64)
    levels = 1 << (bits - 1)
    mags = np.unique(np.abs(vals))
    if len(mags) > levels:
        raise CodecError(f"tensor {name!r}: {len(mags)} distinct magnitudes exceed {levels} levels "
                         f"of {bits}-bit values (values must come from compress)")
    table = np.concatenate([mags, np.full(levels - len(mags), mags[-1])])
    codes = np.searchsorted(mags, np.abs(vals)) | (np.signbit(vals).astype(np.int64) << (bits - 1))
    return table.astype("<f4").tobytes(), codes


def _encode_tensor(name: str, st: SparseTensor, cfg: CodecConfig) -> _Record:
    lay = layout(st.shape, cfg.chunk, cfg.topk)
    flat, vals = _canonical(name, st, lay)
    if not len(flat):
        return _Record(varint(0), 0, 0)
    lines = min((_lines(lay, flat, o) for o in _orientations(st.shape)), key=lambda x: x.bits())
    table, codes = _value_codes(name, vals[lines.order], cfg.bits)
    counts = lines.counts
    pc = rice_parameter(counts)
    w = BitWriter()
    write_rice(w, counts, pc)
    write_rice(w, lines.gaps(), lines.gap_parameters())
    index_bits = w.bit_length
    w.fields(codes, cfg.bits)
    stream = w.getvalue()
    head = varint(len(flat)) + struct.pack("<BB", lines.orient, pc) + table + varint(len(stream))
    return _Record(head + stream, index_bits, len(codes) * cfg.bits + 8 * len(table))


def _header(cfg: CodecConfig, spec: Mapping[str, tuple[int, ...]]) -> bytes:
    return MAGIC + struct.pack("<BIIBI", VERSION, cfg.chunk, cfg.topk, cfg.bits, len(spec)) + spec_digest(spec)


def _records(update: Mapping[str, SparseTensor], cfg: CodecConfig) -> tuple[bytes, list[_Record]]:
    spec = {name: shape_of(st.shape) for name, st in update.items()}
    return _header(cfg, spec), [_encode_tensor(name, st, cfg) for name, st in update.items()]


_TENSOR_HEAD_BYTES = 32 + 4 * (1 << 7)  # varints, orientation, Rice parameter, a value table of <= 128 levels
_POSITION_BITS = 40  # per kept value, at most: a Rice-coded gap costs 1 + k + gap >> k bits (k <= 32)


def max_encoded_bytes(spec: Mapping[str, tuple[int, ...]], cfg: CodecConfig) -> int:
    """An upper bound on ``len(encode(u, cfg))`` for any update ``u`` of ``spec``: every
    block at its quota, each value at ``cfg.bits`` and ``_POSITION_BITS``, each line's count
    at 5 bytes. Linear in the parameter count; receivers cut off longer answers with it."""
    total = len(MAGIC) + 14 + 8
    for shape in spec.values():
        lay = layout(shape_of(shape), cfg.chunk, cfg.topk)
        bits = lay.capacity * (cfg.bits + _POSITION_BITS) + 8 * 5 * (lay.rows + lay.cols)
        total += _TENSOR_HEAD_BYTES + (bits + 7) // 8
    return total


def encode(update: Mapping[str, SparseTensor], cfg: CodecConfig) -> bytes:
    """Serialize ``update``: every tensor of the model, in the model's parameter order."""
    header, records = _records(update, cfg)
    data = b"".join([header, *(r.data for r in records)])
    if len(data) > cfg.max_payload_bytes:
        raise CodecError(f"encoded update is {len(data)} bytes, over max_payload_bytes={cfg.max_payload_bytes}")
    return data


def payload_stats(update: Mapping[str, SparseTensor], cfg: CodecConfig) -> dict[str, float]:
    """Encoded size split into index, value and header bytes (the rest: framing, padding)."""
    header, records = _records(update, cfg)
    total = len(header) + sum(len(r.data) for r in records)
    index = sum(r.index_bits for r in records) / 8
    value = sum(r.value_bits for r in records) / 8
    return {"total_bytes": total, "index_bytes": index, "value_bytes": value,
            "header_bytes": total - index - value, "values": sum(len(st.values) for st in update.values())}


# ---------------------------------------------------------------------------- decode


def _read_header(r: ByteReader, cfg: CodecConfig, spec: Mapping[str, tuple[int, ...]]) -> None:
    if r.take(4, "magic") != MAGIC:
        raise CodecError("not a swarmtrain update (bad magic)")
    version, chunk, topk, bits, n = r.unpack("BIIBI", "header")
    if version != VERSION:
        raise CodecError(f"unsupported codec version {version} (this node speaks {VERSION})")
    if (chunk, topk, bits) != (cfg.chunk, cfg.topk, cfg.bits):
        raise CodecError(f"codec config mismatch: payload chunk={chunk} topk={topk} bits={bits}, "
                         f"expected chunk={cfg.chunk} topk={cfg.topk} bits={cfg.bits}")
    if n != len(spec):
        raise CodecError(f"payload has {n} tensors, the model has {len(spec)}")
    if r.take(8, "spec digest") != spec_digest(spec):
        raise CodecError("payload was encoded for other tensors (parameter names, shapes or order differ)")


def _read_table(r: ByteReader, bits: int, name: str) -> np.ndarray:
    if bits == RAW_BITS:
        return np.zeros(0, dtype=np.float32)
    table = np.frombuffer(r.take(4 << (bits - 1), "value table"), dtype="<f4")
    if not np.isfinite(table).all() or np.any(table < 0):
        raise CodecError(f"tensor {name!r}: value table must be finite and non-negative")
    return table


def _read_positions(b: BitReader, lay: Layout, orient: int, pc: int, n: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(line, position) of each value in stream order."""
    n_lines, length = (lay.rows, lay.cols) if orient == _ROWS else (lay.cols, lay.rows)
    counts = read_rice(b, np.full(n_lines, pc), np.full(n_lines, length), "line counts")
    if int(counts.sum()) != n:
        raise CodecError(f"tensor {name!r}: line counts sum to {int(counts.sum())}, header says {n}")
    full = np.flatnonzero(counts)
    line = np.repeat(full, counts[full])
    p = np.repeat(_gap_parameters(counts[full], length), counts[full])
    gaps = read_rice(b, p, np.repeat(length - counts[full], counts[full]), "positions")
    steps = np.cumsum(gaps + 1)
    starts = np.cumsum(counts[full]) - counts[full]  # index of each line's first value
    pos = steps - np.repeat(steps[starts] - gaps[starts] - 1, counts[full]) - 1
    if n and int(pos.max()) >= length:
        raise CodecError(f"tensor {name!r}: a position is outside its line")
    return line, pos


def _read_values(b: BitReader, table: np.ndarray, n: int, bits: int, name: str) -> np.ndarray:
    codes = b.fields(n, bits, "values")
    if bits == RAW_BITS:
        vals = codes.astype("<u4").view("<f4")
    else:
        mags = table[codes & ((1 << (bits - 1)) - 1)]
        vals = np.where(codes >> (bits - 1) == 1, -mags, mags)
    if not np.isfinite(vals).all():
        raise CodecError(f"tensor {name!r}: non-finite value")
    return vals.astype(np.float32)


def _read_tensor(r: ByteReader, name: str, shape: tuple[int, ...], cfg: CodecConfig) -> SparseTensor:
    lay = layout(shape, cfg.chunk, cfg.topk)
    n = r.varint("value count")
    if n == 0:
        return SparseTensor(shape, torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.float32))
    if n > lay.capacity:
        raise CodecError(f"tensor {name!r}: {n} values, more than its blocks' quotas allow ({lay.capacity})")
    orient, pc = r.unpack("BB", "tensor flags")
    if orient not in _orientations(shape):
        raise CodecError(f"tensor {name!r}: invalid orientation flag {orient}")
    if pc > 32:
        raise CodecError(f"tensor {name!r}: count parameter {pc} too large")
    table = _read_table(r, cfg.bits, name)
    b = BitReader(r.take(r.varint("stream length"), "bit stream"))
    line, pos = _read_positions(b, lay, orient, pc, n, name)
    vals = _read_values(b, table, n, cfg.bits, name)
    b.finish()
    flat = line * lay.cols + pos if orient == _ROWS else pos * lay.cols + line
    order = np.argsort(flat, kind="stable")
    flat, vals = flat[order], vals[order]
    if np.any(np.bincount(lay.block_of(flat), minlength=lay.nblocks) > lay.quotas):
        raise CodecError(f"tensor {name!r}: a block holds more values than its quota")
    return SparseTensor(shape, torch.from_numpy(flat), torch.from_numpy(vals))


def decode(data: bytes, spec: Mapping[str, tuple[int, ...]], cfg: CodecConfig) -> SparseUpdate:
    """Parse and fully validate untrusted bytes against the model's ``spec`` (names, shapes
    and order). Raises ``CodecError`` (and nothing else) if anything is off."""
    if len(data) > cfg.max_payload_bytes:
        raise CodecError(f"payload is {len(data)} bytes, over max_payload_bytes={cfg.max_payload_bytes}")
    spec = {name: shape_of(shape) for name, shape in spec.items()}
    r = ByteReader(bytes(data))
    try:
        _read_header(r, cfg, spec)
        update = {name: _read_tensor(r, name, shape, cfg) for name, shape in spec.items()}
    except BitstreamError as e:
        raise CodecError(str(e)) from e
    except (struct.error, OverflowError, IndexError, ValueError, MemoryError) as e:  # belt and braces
        if isinstance(e, CodecError):
            raise
        raise CodecError(f"malformed payload: {e}") from e
    if r.pos != len(data):
        raise CodecError(f"{len(data) - r.pos} trailing bytes after the last tensor")
    return update
