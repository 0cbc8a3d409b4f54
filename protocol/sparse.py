"""What the update codec works on: its config, a sparse tensor, and the block layout.

Shared by ``protocol.codec`` (choosing and quantizing entries) and ``protocol.codec_wire``
(the bytes). A tensor is seen as a ``rows x cols`` matrix (2-D tensors as they are, any
other rank flattened to one row) cut into blocks; every block keeps the same share of
its entries (its *quota*). See docs/codec.md.

Example:
    >>> lay = layout((128, 70), chunk=64, topk=64)
    >>> lay.quotas.tolist()        # 64x64, 64x6, 64x64, 64x6 blocks
    [64, 6, 64, 6]
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

RAW_BITS = 32  # bits=32: values sent as exact little-endian float32 (e.g. for aggregates)


class CodecError(ValueError):
    """An update cannot be encoded, or received bytes are not a valid update."""


class CodecConfig(BaseModel):
    """Codec parameters; sender and receiver must use equal ones (echoed on the wire).

    Example:
        >>> CodecConfig(chunk=64, topk=64, bits=2).density
        0.015625
        >>> CodecConfig().density   # the default: 48 of each 64x64 block, 1-bit values
        0.01171875
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    chunk: int = Field(64, ge=1, le=4096, description="block side; flat tensors use runs of chunk**2")
    topk: int = Field(48, ge=1, description="values kept per full block (the subnet default)")
    bits: int = Field(1, ge=1, le=RAW_BITS, description="bits per value: 1..8 quantized, or 32 exact fp32 (the subnet default: 1)")
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
    """Kept entries of one tensor: flat positions (int64, CPU, ascending) and values
    (float32, CPU), one value per position.

    Example:
        >>> st = SparseTensor((2, 3), torch.tensor([1, 5]), torch.tensor([0.5, -0.5]))
        >>> st.indices.tolist()
        [1, 5]
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


@dataclass(frozen=True)
class Layout:
    """How a tensor of some shape is cut into blocks: seen as a (rows, cols) matrix with
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

    @property
    def numel(self) -> int:
        return self.rows * self.cols

    @property
    def capacity(self) -> int:
        """Most values a tensor of this layout can send (sum of the quotas)."""
        return int(self.quotas.sum())

    def block_of(self, flat: np.ndarray) -> np.ndarray:
        """Block id (row-major over the block grid) of each flat index."""
        row, col = np.divmod(flat, self.cols)
        block: np.ndarray = (row // self.bh) * self.nbc + col // self.bw
        return block


@functools.lru_cache(maxsize=512)
def layout(shape: tuple[int, ...], chunk: int, topk: int) -> Layout:
    """The block layout of a tensor of ``shape`` (quota per block: docs/codec.md)."""
    numel = math.prod(shape)
    rows, cols, bh, bw = (*shape, chunk, chunk) if len(shape) == 2 else (1, numel, 1, chunk * chunk)
    nbr, nbc = -(-rows // bh), -(-cols // bw)
    heights = np.minimum(bh, rows - np.arange(nbr, dtype=np.int64) * bh)
    widths = np.minimum(bw, cols - np.arange(nbc, dtype=np.int64) * bw)
    sizes = np.outer(heights, widths).reshape(-1)
    block = chunk * chunk
    # Same density everywhere: ceil(topk * size / chunk**2), at least 1, at most size.
    quotas = np.minimum(sizes, np.maximum(1, (topk * sizes + block - 1) // block))
    return Layout(rows, cols, bh, bw, sizes, widths, quotas)


def shape_of(shape: object) -> tuple[int, ...]:
    """Any shape-like (tuple, list, torch.Size) as a tuple of ints."""
    return tuple(int(d) for d in shape)  # type: ignore[attr-defined]
