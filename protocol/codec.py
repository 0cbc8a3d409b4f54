"""The update codec: chunked top-k, low-bit values, line-coded positions, error feedback.

A miner's pseudo-gradient is cut into blocks (``chunk`` x ``chunk`` tiles of 2-D tensors;
runs of ``chunk**2`` elements of any other tensor), the largest ``topk`` magnitudes of each
block are kept and their values quantized to ``bits`` bits (sign + magnitude level, with a
per-tensor table of level means). ``compress`` returns the values a receiver will decode,
so error feedback subtracts exactly what was sent. The bytes (``encode``/``decode``) live
in ``protocol.codec_wire`` and are re-exported here; the format is in docs/codec.md.

Example:
    >>> cfg = CodecConfig()
    >>> delta = {"w": torch.randn(128, 128), "b": torch.randn(128)}
    >>> update = compress(delta, cfg)
    >>> data = encode(update, cfg)
    >>> back = decode(data, {"w": (128, 128), "b": (128,)}, cfg)
    >>> dense = decompress(back, {"w": (128, 128), "b": (128,)})
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from protocol.codec_wire import MAGIC, VERSION, decode, encode, payload_stats, spec_digest
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

__all__ = [
    "MAGIC", "RAW_BITS", "VERSION", "CodecConfig", "CodecError", "ErrorFeedback", "SparseTensor",
    "SparseUpdate", "compress", "decode", "decompress", "encode",
    "payload_stats", "spec_digest",
]

_LLOYD_ITERS = 4


# ---------------------------------------------------------------------------- compress


def _block_magnitudes(name: str, mat: Tensor, lay: Layout) -> Tensor:
    """|mat| rearranged to (nblocks, bh*bw); raises on NaN/Inf (amax propagates both)."""
    mag = mat.abs()
    if not bool(torch.isfinite(mag.amax())):
        raise CodecError(f"tensor {name!r} holds NaN or Inf; refusing to compress it")
    nbr, nbc = -(-lay.rows // lay.bh), lay.nbc
    pad_r, pad_c = nbr * lay.bh - lay.rows, nbc * lay.bw - lay.cols
    if pad_r or pad_c:  # padding gets magnitude -1: never chosen before a real entry
        mag = F.pad(mag, (0, pad_c, 0, pad_r), value=-1.0)
    return mag.view(nbr, lay.bh, nbc, lay.bw).permute(0, 2, 1, 3).reshape(nbr * nbc, lay.bh * lay.bw)


def _topk_blocks(name: str, x: Tensor, lay: Layout) -> tuple[Tensor, Tensor]:
    """Top-quota entries of every block -> (flat indices ascending, values)."""
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
    flat, values = flat[nonzero].cpu(), values[nonzero].float().cpu()
    order = torch.argsort(flat)  # positions are unique: the order is fully determined
    return flat[order], values[order]


def _all_nonzeros(name: str, x: Tensor) -> tuple[Tensor, Tensor]:
    """Every non-zero entry (quotas equal to block sizes: what top-k would keep, without
    sorting the blocks; aggregates use it)."""
    flat = x.reshape(-1)
    if not bool(torch.isfinite(flat.abs().amax())):
        raise CodecError(f"tensor {name!r} holds NaN or Inf; refusing to compress it")
    idx = torch.nonzero(flat).reshape(-1)
    return idx.cpu(), flat[idx].float().cpu()


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
        lay = layout(tuple(x.shape), cfg.chunk, cfg.topk)
        if x.numel() == 0:
            flat, vals = torch.zeros(0, dtype=torch.int64), torch.zeros(0)
        elif np.array_equal(lay.quotas, lay.sizes):
            flat, vals = _all_nonzeros(name, x)
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
        shape = shape_of(shape)
        dense = torch.zeros(math.prod(shape), dtype=torch.float32, device=device)
        st = update.get(name)
        if st is not None:
            if st.shape != shape:
                raise CodecError(f"tensor {name!r}: update shape {st.shape} != spec shape {shape}")
            dense[st.indices.to(device)] = st.values.to(device)
        out[name] = dense.view(shape)
    return out


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
