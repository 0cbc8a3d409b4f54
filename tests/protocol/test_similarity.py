"""The one similarity function: count sketches of sparse updates and their cosine."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from protocol import codec
from protocol.similarity import (
    SKETCH_DIM,
    similarity,
    similarity_matrix,
    sketch,
    support_similarity,
    update_norm,
)

SPEC = {"a.weight": (128, 128), "b.bias": (300,)}
CFG = codec.CodecConfig(chunk=32, topk=32, bits=2)


def _update(seed: int) -> codec.SparseUpdate:
    g = torch.Generator().manual_seed(seed)
    return codec.compress({k: torch.randn(s, generator=g) for k, s in SPEC.items()}, CFG)


def _exact_cosine(a: codec.SparseUpdate, b: codec.SparseUpdate) -> float:
    da, db = codec.decompress(a, SPEC), codec.decompress(b, SPEC)
    dot = sum(float((da[k].double() * db[k].double()).sum()) for k in SPEC)
    return dot / (update_norm(a) * update_norm(b))


def test_sketch_is_deterministic_and_identical_updates_score_one() -> None:
    a = _update(1)
    sa = sketch(a, SPEC)
    assert sa.shape == (SKETCH_DIM,) and np.array_equal(sa, sketch(a, SPEC))
    assert similarity(sa, sa) == pytest.approx(1.0)
    assert similarity(sa, -sa) == pytest.approx(-1.0)
    assert similarity(sa, np.zeros(SKETCH_DIM)) == 0.0


@pytest.mark.parametrize("keep", [1.0, 0.8, 0.5])
def test_similarity_estimates_the_cosine_of_the_updates(keep: float) -> None:
    a, noise = _update(2), _update(3)
    g = torch.Generator().manual_seed(4)
    b = {}
    for k, st in a.items():  # a partial copy plus noise on the kept entries
        mask = torch.rand(st.values.shape, generator=g) < keep
        b[k] = codec.SparseTensor(st.shape, st.indices[mask], st.values[mask] + 0.3 * noise[k].values[mask])
    assert similarity(sketch(a, SPEC), sketch(b, SPEC)) == pytest.approx(_exact_cosine(a, b), abs=0.05)


def test_unrelated_updates_are_near_zero_and_the_matrix_agrees() -> None:
    sketches = [sketch(_update(s), SPEC) for s in range(5)]
    m = similarity_matrix(sketches, sketches)
    assert m.shape == (5, 5) and np.allclose(np.diag(m), 1.0)
    off = m[~np.eye(5, dtype=bool)]
    assert np.abs(off).max() < 0.1
    assert m[0, 1] == pytest.approx(similarity(sketches[0], sketches[1]))
    assert similarity_matrix([], sketches).shape == (0, 5)


def test_norm_and_unknown_tensor() -> None:
    a = _update(5)
    dense = codec.decompress(a, SPEC)
    assert update_norm(a) == pytest.approx(math.sqrt(sum(float(t.double().square().sum()) for t in dense.values())))
    with pytest.raises(ValueError, match="not in the model"):
        sketch({"other": a["b.bias"]}, SPEC)


def test_support_similarity_ignores_the_reference_elsewhere() -> None:
    ref = _update(6)
    top = {k: codec.SparseTensor(st.shape, st.indices[:5], st.values[:5] * 3.0) for k, st in ref.items()}
    assert support_similarity(top, ref) == pytest.approx(1.0)  # any scale of its values there
    signs = {k: codec.SparseTensor(st.shape, st.indices, st.values.sign()) for k, st in top.items()}
    assert support_similarity(signs, ref) > 0.9  # 1-bit: signs only
    assert support_similarity({k: codec.SparseTensor(st.shape, st.indices, -st.values) for k, st in top.items()},
                              ref) == pytest.approx(-1.0)
    elsewhere = {"b.bias": codec.SparseTensor((300,), torch.tensor([299]), torch.tensor([1.0]))}
    if 299 not in ref["b.bias"].indices.tolist():
        assert support_similarity(elsewhere, ref) == 0.0
    assert support_similarity(top, {}) == 0.0
