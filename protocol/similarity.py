"""How alike two updates are: one similarity function for copy, replay and free-rider checks.

A sparse update (``protocol.codec.SparseUpdate``) is summarised by a **count sketch** of
``SKETCH_DIM`` float64 buckets: every kept entry at global position ``p`` (the tensor's
offset in sorted-name order plus its flat index) adds ``sign(p) * value`` to bucket
``bucket(p)``, both taken from one 64-bit mix of ``p``. Inner products of sketches are
unbiased estimates of the updates' inner products (error about ``1 / sqrt(SKETCH_DIM)``
of the norms' product), so ``similarity`` — the cosine of two sketches — estimates the
cosine of the two updates whatever their sparsity, in ``O(kept entries)`` to build and
``O(SKETCH_DIM)`` to compare. Validators keep sketches, not updates, of earlier windows.

Example:
    >>> import torch
    >>> from protocol.codec import SparseTensor
    >>> spec = {"w": (4, 4)}
    >>> a = {"w": SparseTensor((4, 4), torch.tensor([0, 5]), torch.tensor([1.0, -2.0]))}
    >>> round(similarity(sketch(a, spec), sketch(a, spec)), 6)
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from protocol.codec import SparseTensor

SKETCH_DIM = 4096  # buckets; a power of two
_DOMAIN = 0x73776172_6D736B31  # "swarmsk1": changes every bucket if the sketch recipe changes
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over uint64 (wrapping arithmetic): a fixed, well-spread hash."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _offsets(spec: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
    """Global offset of each tensor: the sizes of the tensors before it in sorted-name order."""
    offsets, total = {}, 0
    for name in sorted(spec):
        offsets[name] = total
        total += math.prod(spec[name])
    return offsets


def sketch(update: Mapping[str, SparseTensor], spec: Mapping[str, tuple[int, ...]]) -> np.ndarray:
    """The (SKETCH_DIM,) float64 count sketch of ``update``; names outside ``spec`` are an error."""
    offsets = _offsets(spec)
    out = np.zeros(SKETCH_DIM, dtype=np.float64)
    with np.errstate(over="ignore"):
        for name in sorted(update):
            if name not in offsets:
                raise ValueError(f"tensor {name!r} is not in the model's parameter spec")
            st = update[name]
            pos = st.indices.numpy().astype(np.uint64) + np.uint64(offsets[name])
            h = _mix64(pos ^ np.uint64(_DOMAIN))
            bucket = (h >> np.uint64(64 - SKETCH_DIM.bit_length() + 1)).astype(np.int64)
            sign = np.where((h & np.uint64(1)) == 1, -1.0, 1.0)
            out += np.bincount(bucket, weights=sign * st.values.numpy().astype(np.float64),
                               minlength=SKETCH_DIM)
    return out


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two sketches in [-1, 1]; 0 when either is all zero."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def similarity_matrix(rows: Sequence[np.ndarray], cols: Sequence[np.ndarray]) -> np.ndarray:
    """(len(rows), len(cols)) cosines of every pair, by one matrix product."""
    if not rows or not cols:
        return np.zeros((len(rows), len(cols)))

    def unit(vectors: Sequence[np.ndarray]) -> np.ndarray:
        m = np.stack(vectors)  # one copy of the sketches, normalised in place
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        np.divide(m, norms, out=m, where=norms > 0)
        m[(norms == 0).ravel()] = 0.0
        return m

    cosines: np.ndarray = unit(rows) @ unit(cols).T
    return cosines


def support_similarity(update: Mapping[str, SparseTensor], reference: Mapping[str, SparseTensor]) -> float:
    """Cosine of ``update`` with ``reference`` restricted to the positions ``update`` keeps
    (exact, float64): 1 when the update is a top-k of the reference with its signs, whatever
    the reference holds elsewhere. 0 when either side is zero there."""
    dot = norm_u = norm_r = 0.0
    for name in sorted(update):
        st = update[name]
        u = st.values.numpy().astype(np.float64)
        ref = reference.get(name)
        r = np.zeros_like(u) if ref is None else _values_at(ref, st.indices.numpy())
        dot, norm_u, norm_r = dot + float(u @ r), norm_u + float(u @ u), norm_r + float(r @ r)
    return dot / math.sqrt(norm_u * norm_r) if norm_u > 0 and norm_r > 0 else 0.0


def _values_at(ref: SparseTensor, positions: np.ndarray) -> np.ndarray:
    """``ref``'s values at ``positions`` (0 where it keeps nothing), float64."""
    idx, vals = ref.indices.numpy(), ref.values.numpy().astype(np.float64)
    order = np.argsort(idx, kind="stable")
    idx, vals = idx[order], vals[order]
    at = np.searchsorted(idx, positions)
    at_c = np.minimum(at, max(len(idx) - 1, 0))
    hit = (at < len(idx)) & (idx[at_c] == positions) if len(idx) else np.zeros(len(positions), dtype=bool)
    return np.where(hit, vals[at_c] if len(idx) else 0.0, 0.0)


def update_norm(update: Mapping[str, SparseTensor]) -> float:
    """L2 norm of a sparse update (float64, names in sorted order)."""
    total = 0.0
    for name in sorted(update):
        total += float(np.square(update[name].values.numpy().astype(np.float64)).sum())
    return math.sqrt(total)


__all__ = ["SKETCH_DIM", "similarity", "similarity_matrix", "sketch", "support_similarity", "update_norm"]
