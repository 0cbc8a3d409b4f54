"""Bit-level helpers of the update codec: fixed-width fields, unary codes, a byte reader.

Bit order everywhere: bit ``i`` of a stream is bit ``i % 8`` (least significant first)
of byte ``i // 8``, as numpy's ``packbits(..., bitorder="little")``. Readers work on
untrusted bytes and raise ``BitstreamError`` (which ``protocol.codec`` turns into
``CodecError``).

Example:
    >>> unpack_fields(pack_fields(np.array([5, 0, 3]), 3), 3, 3).tolist()
    [5, 0, 3]
    >>> unpack_unary(pack_unary(np.array([2, 0])), 2).tolist()
    [2, 0]
"""

from __future__ import annotations

import struct

import numpy as np


class BitstreamError(ValueError):
    """Bytes end early, or a packed stream has the wrong length or non-zero padding."""


def _field_bytes(width: int) -> int:
    """Bytes that hold one field of ``width`` bits when unpacked (1, 2 or 4)."""
    return 1 if width <= 8 else 2 if width <= 16 else 4


def pack_fields(values: np.ndarray, width: int) -> bytes:
    """Fixed-width unsigned fields, least significant bit first, padded to a byte."""
    if width == 0 or values.size == 0:
        return b""
    raw = values.astype("<u4").view(np.uint8).reshape(-1, 4)  # (count, 4) little-endian bytes
    bits = np.unpackbits(raw, axis=1, bitorder="little")[:, :width]  # (count, width)
    return np.packbits(bits.reshape(-1), bitorder="little").tobytes()


def unpack_fields(buf: bytes, count: int, width: int) -> np.ndarray:
    """Inverse of ``pack_fields``: ``count`` fields as int64; padding bits must be zero."""
    if width == 0 or count == 0:
        return np.zeros(count, dtype=np.int64)
    bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), bitorder="little")
    if bits[count * width:].any():
        raise BitstreamError("non-zero padding bits after a packed field")
    nbytes = _field_bytes(width)
    fields = np.zeros((count, 8 * nbytes), dtype=np.uint8)
    fields[:, :width] = bits[: count * width].reshape(count, width)
    packed = np.packbits(fields, axis=1, bitorder="little")  # (count, nbytes)
    return packed.view(f"<u{nbytes}").reshape(count).astype(np.int64)


def packed_len(count: int, width: int) -> int:
    """Bytes taken by ``count`` fields of ``width`` bits."""
    return (count * width + 7) // 8


def pack_unary(q: np.ndarray) -> bytes:
    """Each q as q one-bits then a zero-bit, LSB first."""
    ends = np.cumsum(q + 1) - 1  # position of each terminating zero
    bits = np.ones(int(ends[-1]) + 1 if q.size else 0, dtype=np.uint8)
    bits[ends] = 0
    return np.packbits(bits, bitorder="little").tobytes()


def unpack_unary(buf: bytes, count: int) -> np.ndarray:
    """Inverse of ``pack_unary`` for exactly ``count`` codes filling ``buf`` (zero padding)."""
    bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), bitorder="little")
    zeros = bits.size - int(bits.sum(dtype=np.int64))
    # Exactly `count` terminators, plus at most 7 zero padding bits.
    if not count <= zeros < count + 8:
        raise BitstreamError(f"index stream holds {zeros} codes, expected {count}")
    ends = np.flatnonzero(bits == 0)[:count]
    used = int(ends[-1]) + 1 if count else 0
    if len(buf) != (used + 7) // 8 or bits[used:].any():
        raise BitstreamError("index stream has trailing bytes or non-zero padding")
    return np.diff(ends, prepend=-1) - 1


def rice_parameter(gaps: np.ndarray) -> int:
    """Low-bit width p minimising sum(gap >> p) + n * (p + 1)."""
    if gaps.size == 0:
        return 0
    top = int(gaps.max()).bit_length()
    costs = [int((gaps >> p).sum()) + gaps.size * (p + 1) for p in range(top + 1)]
    return int(np.argmin(costs))

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
