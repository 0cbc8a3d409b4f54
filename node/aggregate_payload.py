"""Lossless wire format of a published aggregate: sparse fp32, exact bytes for every node.

Miners' updates travel in the lossy ``protocol.codec`` format; the aggregate the lead
validator publishes is their clipped mean, whose support is the union of the
contributors' indices. Re-quantizing it would lose information, so it is sent
losslessly: per tensor (in ``param_spec`` order) its non-zero flat positions and fp32
values. Every node decodes the same bytes into the same dense tensors, and the outer
step is elementwise fp32, so θ_{w+1} is bit-identical everywhere.

Layout (little endian)::

    b"STAG1\\0" | u32 n_tensors | per tensor: u16 name_len | name utf-8 | u32 nnz
                | nnz x u32 flat index (strictly increasing) | nnz x f32 value (finite)

Example:
    >>> data = encode_aggregate({"w": torch.tensor([0.0, 1.5])}, {"w": (2,)})
    >>> decode_aggregate(data, {"w": (2,)})["w"]
    tensor([0.0000, 1.5000])
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

MAGIC = b"STAG1\x00"


class AggregatePayloadError(ValueError):
    """Aggregate bytes are malformed or do not fit the model's parameter spec."""


def encode_aggregate(update: Mapping[str, Tensor], spec: Mapping[str, tuple[int, ...]]) -> bytes:
    """Dense fp32 tensors (one per spec entry; missing = zero) -> bytes."""
    parts = [MAGIC, struct.pack("<I", len(spec))]
    for name, shape in spec.items():
        flat = _flat_fp32(update.get(name), shape, name)
        idx = np.flatnonzero(flat).astype("<u4")
        name_b = name.encode("utf-8")
        parts += [struct.pack("<H", len(name_b)), name_b, struct.pack("<I", idx.size)]
        parts += [idx.tobytes(), flat[idx].astype("<f4").tobytes()]
    return b"".join(parts)


def _flat_fp32(t: Tensor | None, shape: tuple[int, ...], name: str) -> np.ndarray:
    numel = math.prod(shape)
    if t is None:
        return np.zeros(numel, dtype=np.float32)
    if tuple(t.shape) != tuple(shape):
        raise AggregatePayloadError(f"{name}: shape {tuple(t.shape)} != spec {tuple(shape)}")
    flat = t.detach().to("cpu", torch.float32).reshape(-1).numpy()
    if not np.isfinite(flat).all():
        raise AggregatePayloadError(f"{name}: aggregate has non-finite values")
    return flat


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = memoryview(data), 0

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise AggregatePayloadError(f"truncated aggregate while reading {what}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> int:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]


def decode_aggregate(data: bytes, spec: Mapping[str, tuple[int, ...]]) -> dict[str, Tensor]:
    """Bytes -> dense fp32 tensors exactly shaped as ``spec``; validates everything."""
    r = _Reader(data)
    if bytes(r.take(len(MAGIC), "magic")) != MAGIC:
        raise AggregatePayloadError("not an aggregate payload (bad magic)")
    if r.unpack("<I", "tensor count") != len(spec):
        raise AggregatePayloadError(f"aggregate must hold exactly {len(spec)} tensors")
    out = {name: _read_tensor(r, name, shape) for name, shape in spec.items()}
    if r.pos != len(r.data):
        raise AggregatePayloadError(f"{len(r.data) - r.pos} trailing bytes after the aggregate")
    return out


def _read_tensor(r: _Reader, name: str, shape: tuple[int, ...]) -> Tensor:
    got = bytes(r.take(r.unpack("<H", "name length"), "name")).decode("utf-8", "replace")
    if got != name:
        raise AggregatePayloadError(f"expected tensor {name!r}, found {got!r}")
    nnz, numel = r.unpack("<I", f"{name} nnz"), math.prod(shape)
    if nnz > numel:
        raise AggregatePayloadError(f"{name}: {nnz} entries for {numel} positions")
    idx = np.frombuffer(r.take(4 * nnz, f"{name} indices"), dtype="<u4").astype(np.int64)
    vals = np.frombuffer(r.take(4 * nnz, f"{name} values"), dtype="<f4").astype(np.float32)
    if nnz and (idx[-1] >= numel or (nnz > 1 and not (np.diff(idx) > 0).all())):
        raise AggregatePayloadError(f"{name}: indices out of range or not strictly increasing")
    if not np.isfinite(vals).all():
        raise AggregatePayloadError(f"{name}: non-finite values")
    dense = np.zeros(numel, dtype=np.float32)
    dense[idx] = vals
    return torch.from_numpy(dense).reshape(shape)
