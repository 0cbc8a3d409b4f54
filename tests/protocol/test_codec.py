"""protocol.codec: selection, quantization, wire round trip, hostile input, error feedback."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.bitpack import BitstreamError, pack_fields, pack_unary, unpack_fields, unpack_unary
from protocol.codec import (
    CodecConfig,
    CodecError,
    ErrorFeedback,
    SparseTensor,
    compress,
    cosine,
    decode,
    decompress,
    encode,
    index_overlap,
    payload_stats,
)

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _randn(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _spec(tensors: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in tensors.items()}


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, torch.Tensor], CodecConfig]:
    chunk = draw(st.sampled_from([1, 2, 3, 4, 8, 16]))
    topk = draw(st.integers(1, chunk * chunk))
    bits = draw(st.sampled_from([1, 2, 3, 8, 32]))
    shapes = draw(st.lists(st.one_of(
        st.tuples(st.integers(1, 40), st.integers(1, 40)),
        st.tuples(st.integers(0, 300)),
        st.just(()),
        st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 6)),
    ), min_size=1, max_size=4))
    seed = draw(st.integers(0, 2**31))
    tensors = {f"t{i}.weight": _randn(s, seed + i) for i, s in enumerate(shapes)}
    return tensors, CodecConfig(chunk=chunk, topk=topk, bits=bits)


def _blocks(shape: tuple[int, ...], chunk: int) -> list[list[int]]:
    """Reference block membership, by plain loops: flat indices of each block in order."""
    numel = math.prod(shape)
    if len(shape) != 2:
        run = chunk * chunk
        return [list(range(s, min(s + run, numel))) for s in range(0, numel, run)]
    rows, cols = shape
    return [[r * cols + c for r in range(br, min(br + chunk, rows)) for c in range(bc, min(bc + chunk, cols))]
            for br in range(0, rows, chunk) for bc in range(0, cols, chunk)]


@FAST
@given(cases())
def test_encode_decode_round_trip_is_exact(case: tuple[dict, CodecConfig]) -> None:
    tensors, cfg = case
    update = compress(tensors, cfg)
    assert decode(encode(update, cfg), _spec(tensors), cfg) == update


@FAST
@given(cases())
def test_compress_keeps_each_blocks_largest_entries(case: tuple[dict, CodecConfig]) -> None:
    tensors, cfg = case
    update = compress(tensors, cfg)
    for name, x in tensors.items():
        flat, kept = x.reshape(-1), set(update[name].indices.tolist())
        for block in _blocks(tuple(x.shape), cfg.chunk):
            quota = min(len(block), max(1, -(-cfg.topk * len(block) // cfg.chunk**2)))
            mags = sorted((abs(float(flat[i])) for i in block), reverse=True)
            mine = [i for i in block if i in kept]
            assert len(mine) == quota  # randn has no exact zeros
            assert min(abs(float(flat[i])) for i in mine) >= mags[quota - 1]


@FAST
@given(cases())
def test_dequantized_values_keep_sign_and_few_levels(case: tuple[dict, CodecConfig]) -> None:
    tensors, cfg = case
    for name, sp in compress(tensors, cfg).items():
        orig = tensors[name].reshape(-1)[sp.indices]
        assert torch.equal(torch.sign(sp.values), torch.sign(orig))
        if cfg.bits == 32:
            assert torch.equal(sp.values, orig)
        else:
            assert len(sp.values.abs().unique()) <= 2 ** (cfg.bits - 1)
        # canonical order: ascending within a flat-run tensor of one block
        assert len(set(sp.indices.tolist())) == len(sp.indices)


def test_default_config_ratio_and_reconstruction() -> None:
    cfg = CodecConfig()
    x = {"w": _randn((512, 512), 0)}
    update = compress(x, cfg)
    data = encode(update, cfg)
    assert 512 * 512 * 4 / len(data) >= 200
    stats = payload_stats(update, cfg)
    assert stats["values"] == 512 * 512 // 64
    assert stats["index_bytes"] * 8 / stats["values"] < 8.5  # well under 12 naive bits
    dense = decompress(decode(data, _spec(x), cfg), _spec(x))["w"]
    top = x["w"].reshape(-1)[update["w"].indices]
    rel = float((dense.reshape(-1)[update["w"].indices] - top).norm() / top.norm())
    assert rel < 0.35  # 2-bit Lloyd levels on the kept values


def test_exact_zeros_are_not_sent() -> None:
    cfg = CodecConfig(chunk=4, topk=4)
    x = torch.zeros(8, 8)
    x[0, 0], x[5, 6] = 1.0, -2.0
    update = compress({"w": x}, cfg)
    assert update["w"].indices.tolist() == [0, 46]
    assert decode(encode(update, cfg), {"w": (8, 8)}, cfg) == update


def test_compress_rejects_non_finite() -> None:
    with pytest.raises(CodecError, match="NaN"):
        compress({"w": torch.tensor([1.0, float("nan")])}, CodecConfig())


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        CodecConfig(chunk=4, topk=17)
    with pytest.raises(ValueError):
        CodecConfig(bits=12)
    assert CodecConfig(bits=32).bits == 32


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 31).flatmap(lambda w: st.tuples(st.just(w), st.lists(st.integers(0, 2**w - 1), max_size=50))))
def test_bit_fields_round_trip(case: tuple[int, list[int]]) -> None:
    width, values = case
    data = pack_fields(np.array(values, dtype=np.int64), width)
    assert len(data) == (len(values) * width + 7) // 8
    assert unpack_fields(data, len(values), width).tolist() == values


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=50))
def test_unary_round_trip_and_strictness(q: list[int]) -> None:
    data = pack_unary(np.array(q, dtype=np.int64))
    assert unpack_unary(data, len(q)).tolist() == q
    with pytest.raises(BitstreamError):
        unpack_unary(data + b"\0", len(q))
    if q:
        with pytest.raises(BitstreamError):
            unpack_unary(data, len(q) + 8)


# ---------------------------------------------------------------------------- error feedback


def test_error_feedback_conserves_mass_with_beta_one() -> None:
    cfg, ef = CodecConfig(chunk=8, topk=4), ErrorFeedback(beta=1.0)
    total, sent = torch.zeros(20, 30), torch.zeros(20, 30)
    for seed in range(5):
        d = _randn((20, 30), seed)
        total += d
        sent += decompress(ef.step({"w": d}, cfg), {"w": (20, 30)})["w"]
    assert torch.allclose(sent + ef.state_dict()["w"], total, atol=1e-5)


def test_error_feedback_recurrence_and_state_round_trip() -> None:
    cfg, ef = CodecConfig(chunk=8, topk=4, bits=3), ErrorFeedback(beta=0.9)
    e = torch.zeros(50)
    for seed in range(4):
        d = _randn((50,), seed)
        update = ef.step({"b": d}, cfg)
        e = 0.9 * e + d - decompress(update, {"b": (50,)})["b"]
        assert torch.allclose(ef.state_dict()["b"], e, atol=1e-6)
    clone = ErrorFeedback(beta=0.9)
    clone.load_state_dict(ef.state_dict())
    d = _randn((50,), 99)
    assert clone.step({"b": d}, cfg) == ef.step({"b": d}, cfg)


# ---------------------------------------------------------------------------- similarity


def test_overlap_and_cosine() -> None:
    cfg = CodecConfig(chunk=8, topk=8)
    x = {"w": _randn((16, 16), 1)}
    a, b = compress(x, cfg), compress({"w": -x["w"]}, cfg)
    c = compress({"w": _randn((16, 16), 2)}, cfg)
    assert index_overlap(a, a) == 1.0 and cosine(a, a) == pytest.approx(1.0)
    assert index_overlap(a, b) == 1.0 and cosine(a, b) == pytest.approx(-1.0)
    assert index_overlap(a, c) < 0.5 and abs(cosine(a, c)) < 0.5
    assert index_overlap({}, {}) == 0.0 and cosine(a, {}) == 0.0


# ---------------------------------------------------------------------------- hostile input

CFG = CodecConfig(chunk=8, topk=6, bits=2, max_payload_bytes=4096)
X = {"a.weight": _randn((20, 12), 3), "b": _randn((70,), 4), "c": _randn((), 5)}
SPEC = _spec(X)
GOOD = encode(compress(X, CFG), CFG)


def _assert_valid(update: dict, spec: dict) -> None:
    assert set(update) == set(spec)
    for name, sp in update.items():
        assert sp.shape == spec[name]
        idx = sp.indices
        assert idx.dtype == torch.int64 and sp.values.dtype == torch.float32
        assert len(idx) == len(sp.values) == len(set(idx.tolist()))
        assert bool((idx >= 0).all()) and bool((idx < math.prod(sp.shape)).all())
        assert bool(torch.isfinite(sp.values).all())


def test_decode_rejects_every_truncation() -> None:
    for n in range(len(GOOD)):
        with pytest.raises(CodecError):
            decode(GOOD[:n], SPEC, CFG)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(1, 255)), min_size=1, max_size=4))
def test_decode_byte_flips_raise_or_stay_valid(flips: list[tuple[int, int]]) -> None:
    data = bytearray(GOOD)
    for pos, xor in flips:
        data[pos] ^= xor
    try:
        update = decode(bytes(data), SPEC, CFG)
    except CodecError:
        return
    _assert_valid(update, SPEC)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_decode_random_bytes_raise_codec_error(junk: bytes) -> None:
    with pytest.raises(CodecError):
        decode(GOOD[:20] + junk, SPEC, CFG)


def test_decode_rejects_header_problems() -> None:
    with pytest.raises(CodecError, match="trailing"):
        decode(GOOD + b"\0", SPEC, CFG)
    with pytest.raises(CodecError, match="max_payload_bytes"):
        decode(GOOD, SPEC, CFG.model_copy(update={"max_payload_bytes": len(GOOD) - 1}))
    with pytest.raises(CodecError, match="magic"):
        decode(b"XXXX" + GOOD[4:], SPEC, CFG)
    with pytest.raises(CodecError, match="version"):
        decode(GOOD[:4] + b"\x02" + GOOD[5:], SPEC, CFG)
    with pytest.raises(CodecError, match="config mismatch"):
        decode(GOOD, SPEC, CodecConfig(chunk=8, topk=6, bits=3))


def test_decode_rejects_wrong_names_and_shapes() -> None:
    renamed = {("z" if k == "b" else k): v for k, v in SPEC.items()}
    with pytest.raises(CodecError, match="unexpected"):
        decode(GOOD, renamed, CFG)
    with pytest.raises(CodecError, match="tensors"):
        decode(GOOD, {**SPEC, "extra": (3,)}, CFG)
    with pytest.raises(CodecError, match="shape"):
        decode(GOOD, {**SPEC, "b": (71,)}, CFG)
    twice = encode({"b": compress(X, CFG)["b"]}, CFG)
    doubled = twice[:14] + struct.pack("<I", 2) + twice[18:] + twice[18:]
    with pytest.raises(CodecError, match="duplicate"):
        decode(doubled, {"b": (70,), "b2": (70,)}, CFG)


# Hand-built payloads (independent of the encoder): one flat tensor of shape (4,),
# chunk=2 -> one block of 4 elements, topk=4 -> quota 4, bits=32 -> raw fp32 values.
RAW = CodecConfig(chunk=2, topk=4, bits=32)


def _raw_payload(counts: int, gaps: list[int], values: list[float], mode: int = 1,
                 table: bytes = b"", cfg: CodecConfig = RAW) -> bytes:
    head = b"STUP" + struct.pack("<BIIBI", 1, cfg.chunk, cfg.topk, cfg.bits, 1)
    head += struct.pack("<H", 1) + b"t" + struct.pack("<BI", 1, 4)
    head += struct.pack("<IBB", len(values), mode, 0)  # rice p = 0: gaps are all-unary
    body = bytes([counts]) if mode == 1 else b""  # 3-bit count, LSB first
    bits = "".join("1" * g + "0" for g in gaps)
    high = bytes(int(bits[i : i + 8][::-1], 2) for i in range(0, len(bits), 8))  # LSB first
    body += struct.pack("<I", len(high)) + high
    vals = table + (np.array(values, dtype="<f4").tobytes() if not table else bytes([values[0]]))
    return head + body + vals


def test_hand_built_payload_decodes_as_specified() -> None:
    update = decode(_raw_payload(2, [1, 1], [0.5, -2.0]), {"t": (4,)}, RAW)
    assert update["t"].indices.tolist() == [1, 3]
    assert update["t"].values.tolist() == [0.5, -2.0]


def test_decode_rejects_bad_indices_and_values() -> None:
    with pytest.raises(CodecError, match="outside its block|out of range"):
        decode(_raw_payload(2, [1, 2], [1.0, 1.0]), {"t": (4,)}, RAW)  # positions 1, 4
    with pytest.raises(CodecError, match="quota"):
        decode(_raw_payload(5, [0] * 5, [1.0] * 5), {"t": (4,)}, RAW)
    with pytest.raises(CodecError, match="sum"):
        decode(_raw_payload(3, [0, 0], [1.0, 1.0]), {"t": (4,)}, RAW)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(CodecError, match="non-finite"):
            decode(_raw_payload(1, [0], [bad]), {"t": (4,)}, RAW)
    q2 = CodecConfig(chunk=2, topk=4, bits=2)
    ok = _raw_payload(1, [0], [0b01], table=np.array([0.5, 1.5], "<f4").tobytes(), cfg=q2)
    assert decode(ok, {"t": (4,)}, q2)["t"].values.tolist() == [1.5]
    for table in ([float("nan"), 1.0], [-1.0, 1.0], [1.0, float("inf")]):
        bad = _raw_payload(1, [0], [0], table=np.array(table, "<f4").tobytes(), cfg=q2)
        with pytest.raises(CodecError, match="table"):
            decode(bad, {"t": (4,)}, q2)


def test_encode_rejects_malformed_updates() -> None:
    shape = (4,)
    dup = SparseTensor(shape, torch.tensor([1, 1]), torch.tensor([1.0, 1.0]))
    with pytest.raises(CodecError, match="duplicate"):
        encode({"t": dup}, RAW)
    oob = SparseTensor(shape, torch.tensor([4]), torch.tensor([1.0]))
    with pytest.raises(CodecError, match="range"):
        encode({"t": oob}, RAW)
    many = SparseTensor(shape, torch.tensor([0, 1, 2]), torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(CodecError, match="levels"):
        encode({"t": many}, CodecConfig(chunk=2, topk=4, bits=2))
    with pytest.raises(CodecError, match="not in the spec"):
        decompress({"t": many}, {"u": shape})
