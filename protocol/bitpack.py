"""Bit-level helpers of the update codec: bit streams, Rice parameters, varints, a byte reader.

Bit order everywhere: bit ``i`` of a stream is bit ``i % 8`` (least significant first)
of byte ``i // 8``, as numpy's ``packbits(..., bitorder="little")``. A field of ``w``
bits is written least significant bit first; a unary code ``q`` is ``q`` one-bits then
one zero-bit. Readers work on untrusted bytes and raise ``BitstreamError`` (which
``protocol.codec`` turns into ``CodecError``).

Example:
    >>> w = BitWriter()
    >>> w.fields(np.array([5, 0, 3]), 3); w.unary(np.array([2, 0]))
    >>> r = BitReader(w.getvalue())
    >>> r.fields(3, 3).tolist(), r.unary(2, limit=9).tolist()
    ([5, 0, 3], [2, 0])
    >>> r.finish()
"""

from __future__ import annotations

import struct

import numpy as np

_MAX_VARINT_BYTES = 5  # values < 2**32


class BitstreamError(ValueError):
    """Bytes end early, or a stream has the wrong length, non-zero padding or a bad code."""


class BitWriter:
    """Appends fields and unary codes to one bit stream; ``getvalue`` pads with zero bits."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []  # uint8 arrays of 0/1, in stream order

    def fields(self, values: np.ndarray, width: int) -> None:
        """Each value as ``width`` bits (0 <= value < 2**width)."""
        self.varfields(values, np.full(len(values), width, dtype=np.int64))

    def varfields(self, values: np.ndarray, widths: np.ndarray) -> None:
        """Value ``i`` as ``widths[i]`` bits; fields follow each other with no gap."""
        values = np.asarray(values, dtype=np.int64)
        widths = np.asarray(widths, dtype=np.int64)
        total = int(widths.sum())
        if total == 0:
            return
        bits = np.zeros(total, dtype=np.uint8)
        start = np.cumsum(widths) - widths
        for j in range(int(widths.max())):
            sel = widths > j
            bits[start[sel] + j] = (values[sel] >> j) & 1
        self._parts.append(bits)

    def unary(self, q: np.ndarray) -> None:
        """Each q as q one-bits then a zero-bit."""
        q = np.asarray(q, dtype=np.int64)
        if q.size == 0:
            return
        ends = np.cumsum(q + 1) - 1  # position of each terminating zero
        bits = np.ones(int(ends[-1]) + 1, dtype=np.uint8)
        bits[ends] = 0
        self._parts.append(bits)

    @property
    def bit_length(self) -> int:
        return sum(len(p) for p in self._parts)

    def getvalue(self) -> bytes:
        if not self._parts:
            return b""
        return np.packbits(np.concatenate(self._parts), bitorder="little").tobytes()


class BitReader:
    """Reads a stream written by ``BitWriter``; every read is bounds-checked."""

    def __init__(self, data: bytes) -> None:
        self.bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        self.pos = 0

    def _need(self, n: int, what: str) -> None:
        if self.pos + n > len(self.bits):
            raise BitstreamError(f"bit stream ends early reading {what}")

    def fields(self, count: int, width: int, what: str = "fields") -> np.ndarray:
        """``count`` fields of ``width`` bits, as int64."""
        return self.varfields(np.full(count, width, dtype=np.int64), what)

    def varfields(self, widths: np.ndarray, what: str = "fields") -> np.ndarray:
        """One field per entry of ``widths`` (each 0..62 bits), as int64."""
        widths = np.asarray(widths, dtype=np.int64)
        total = int(widths.sum())
        self._need(total, what)
        out = np.zeros(len(widths), dtype=np.int64)
        if total:
            start = self.pos + np.cumsum(widths) - widths
            for j in range(int(widths.max())):
                sel = widths > j
                out[sel] |= self.bits[start[sel] + j].astype(np.int64) << j
        self.pos += total
        return out

    def unary(self, count: int, limit: int, what: str = "unary codes") -> np.ndarray:
        """``count`` unary codes, each at most ``limit`` (a larger one is an error)."""
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        window = self.bits[self.pos : self.pos + count * (limit + 1)]  # no valid code reads further
        ends = np.flatnonzero(window == 0)[:count]
        if len(ends) < count:
            raise BitstreamError(f"{what}: a code is longer than {limit} or the stream ends early")
        q = np.diff(ends, prepend=-1) - 1
        if int(q.max()) > limit:
            raise BitstreamError(f"{what}: a code is longer than {limit}")
        self.pos += int(ends[-1]) + 1
        return q

    def finish(self) -> None:
        """The stream must end here: fewer than 8 bits left, all of them zero."""
        left = len(self.bits) - self.pos
        if left >= 8 or self.bits[self.pos :].any():
            raise BitstreamError("bit stream has trailing bytes or non-zero padding")


def rice_parameter(values: np.ndarray) -> int:
    """Low-bit width p minimising sum(v >> p) + n * (p + 1): the bits of Rice-coding them."""
    values = np.asarray(values, dtype=np.int64)
    if values.size == 0:
        return 0
    top = int(values.max()).bit_length()
    costs = [int((values >> p).sum()) + values.size * (p + 1) for p in range(top + 1)]
    return int(np.argmin(costs))


def write_rice(w: BitWriter, values: np.ndarray, p: np.ndarray | int) -> None:
    """Rice codes of ``values`` with parameter(s) ``p``: all low parts, then all quotients."""
    values = np.asarray(values, dtype=np.int64)
    p = np.broadcast_to(np.asarray(p, dtype=np.int64), values.shape)
    w.varfields(values & ((1 << p) - 1), p)
    w.unary(values >> p)


def read_rice(r: BitReader, p: np.ndarray, limits: np.ndarray, what: str) -> np.ndarray:
    """Inverse of ``write_rice``; value ``i`` must be at most ``limits[i]``."""
    p = np.asarray(p, dtype=np.int64)
    limits = np.asarray(limits, dtype=np.int64)
    low = r.varfields(p, what)
    high = r.unary(len(p), int((limits >> p).max()) if len(p) else 0, what)
    values: np.ndarray = (high << p) | low
    if np.any(values > limits):
        raise BitstreamError(f"{what}: a value is out of range")
    return values


def varint(n: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, low groups first, high bit = more bytes follow."""
    if not 0 <= n < 1 << 32:
        raise ValueError(f"varint out of range: {n}")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class ByteReader:
    """Bounds-checked cursor over untrusted bytes."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = memoryview(data), 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise BitstreamError(f"payload truncated reading {what} ({n} bytes at offset {self.pos})")
        self.pos += n
        return bytes(self.data[self.pos - n : self.pos])

    def unpack(self, fmt: str, what: str) -> tuple[int, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def varint(self, what: str) -> int:
        """A minimal LEB128 varint < 2**32 (overlong or oversized encodings are errors)."""
        value = 0
        for i in range(_MAX_VARINT_BYTES):
            (byte,) = self.take(1, what)
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if i and byte == 0:
                    raise BitstreamError(f"{what}: overlong varint")
                if value >= 1 << 32:
                    raise BitstreamError(f"{what}: varint out of range")
                return value
        raise BitstreamError(f"{what}: varint longer than {_MAX_VARINT_BYTES} bytes")
