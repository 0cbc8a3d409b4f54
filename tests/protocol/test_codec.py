"""protocol.codec: selection, quantization, wire round trip, hostile input, error feedback."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.bitpack import BitReader, BitstreamError, BitWriter, ByteReader, varint
from protocol.codec import (
    CodecConfig,
    CodecError,
    ErrorFeedback,
    SparseTensor,
    compress,
    decode,
    decompress,
    encode,
    payload_stats,
    spec_digest,
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
        # canonical order: strictly ascending flat indices
        assert bool((sp.indices[1:] > sp.indices[:-1]).all())


def test_default_config_ratio_and_reconstruction() -> None:
    cfg = CodecConfig()
    x = {"w": _randn((512, 512), 0)}
    update = compress(x, cfg)
    data = encode(update, cfg)
    # random positions, the worst case for the line coding: real updates do better
    assert 512 * 512 * 4 / len(data) >= 280
    stats = payload_stats(update, cfg)
    assert stats["values"] == 512 * 512 * 48 // 4096
    assert stats["index_bytes"] * 8 / stats["values"] < 8.4  # uniform bound for 48 of 4096: 7.76
    assert stats["value_bytes"] * 8 / stats["values"] < 1.05  # 1 sign bit + one f32 per tensor
    dense = decompress(decode(data, _spec(x), cfg), _spec(x))["w"]
    top = x["w"].reshape(-1)[update["w"].indices]
    rel = float((dense.reshape(-1)[update["w"].indices] - top).norm() / top.norm())
    assert rel < 0.35  # 1-bit: sign times the mean kept magnitude


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
@given(st.lists(st.integers(0, 32).flatmap(lambda w: st.tuples(st.just(w), st.integers(0, 2**w - 1))), max_size=50))
def test_bit_fields_round_trip(fields: list[tuple[int, int]]) -> None:
    widths = np.array([w for w, _ in fields], dtype=np.int64)
    values = np.array([v for _, v in fields], dtype=np.int64)
    w = BitWriter()
    w.varfields(values, widths)
    data = w.getvalue()
    assert len(data) == (int(widths.sum()) + 7) // 8
    r = BitReader(data)
    assert r.varfields(widths).tolist() == values.tolist()
    r.finish()
    with pytest.raises(BitstreamError):
        BitReader(data + b"\0").finish()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=50))
def test_unary_round_trip_and_strictness(q: list[int]) -> None:
    w = BitWriter()
    w.unary(np.array(q, dtype=np.int64))
    data = w.getvalue()
    r = BitReader(data)
    assert r.unary(len(q), limit=40).tolist() == q
    r.finish()
    if q:
        with pytest.raises(BitstreamError):
            BitReader(data).unary(len(q) + 8, limit=40)
        if max(q) > 0:
            with pytest.raises(BitstreamError):
                BitReader(data).unary(len(q), limit=max(q) - 1)


def test_bit_order_is_lsb_first() -> None:
    w = BitWriter()
    w.fields(np.array([0b101]), 3)
    w.unary(np.array([2]))
    assert w.getvalue() == bytes([0b00011101])  # 1,0,1 then 1,1,0


def test_varints_are_minimal_and_bounded() -> None:
    for n in (0, 1, 127, 128, 300, 2**32 - 1):
        r = ByteReader(varint(n))
        assert r.varint("n") == n and r.pos == len(varint(n))
    assert varint(300) == bytes([0xAC, 0x02])
    for bad in (b"\x80\x00", b"\xff\xff\xff\xff\x10", b"\x80\x80\x80\x80\x80\x01", b"\x80"):
        with pytest.raises(BitstreamError):
            ByteReader(bad).varint("n")
    with pytest.raises(ValueError):
        varint(2**32)


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
    with pytest.raises(CodecError, match="version 1"):
        decode(GOOD[:4] + b"\x01" + GOOD[5:], SPEC, CFG)
    with pytest.raises(CodecError, match="config mismatch"):
        decode(GOOD, SPEC, CodecConfig(chunk=8, topk=6, bits=3))


def test_decode_rejects_other_names_shapes_and_order() -> None:
    renamed = {("z" if k == "b" else k): v for k, v in SPEC.items()}
    with pytest.raises(CodecError, match="other tensors"):
        decode(GOOD, renamed, CFG)
    with pytest.raises(CodecError, match="tensors"):
        decode(GOOD, {**SPEC, "extra": (3,)}, CFG)
    with pytest.raises(CodecError, match="other tensors"):
        decode(GOOD, {**SPEC, "b": (71,)}, CFG)
    with pytest.raises(CodecError, match="other tensors"):
        decode(GOOD, dict(reversed(SPEC.items())), CFG)


def test_encoding_is_deterministic_and_names_travel_as_a_digest() -> None:
    update = compress(X, CFG)
    copy = {k: SparseTensor(v.shape, v.indices.clone(), v.values.clone()) for k, v in update.items()}
    assert encode(update, CFG) == encode(copy, CFG) == GOOD
    assert b"a.weight" not in GOOD
    assert GOOD[18:26] == spec_digest(SPEC)


def test_rows_or_columns_whichever_is_cheaper() -> None:
    cfg = CodecConfig(chunk=16, topk=16)
    base = _randn((64, 64), 7).abs() + 0.1
    for hot, orient in ((base * (torch.arange(64) % 8 == 0)[:, None], 0),   # a few hot rows
                        (base * (torch.arange(64) % 8 == 0)[None, :], 1)):  # a few hot columns
        update = compress({"w": hot}, cfg)
        data = encode(update, cfg)
        assert data[26 + len(varint(len(update["w"].indices)))] == orient
        assert decode(data, {"w": (64, 64)}, cfg) == update


# Hand-built payloads (independent of the encoder), per docs/codec.md.
RAW = CodecConfig(chunk=2, topk=4, bits=32)


def _bits(value: int, width: int) -> str:
    return "".join(str((value >> i) & 1) for i in range(width))  # LSB first


def _stream(bits: str) -> bytes:
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i : i + 8][::-1], 2) for i in range(0, len(bits), 8))


def _record(counts: list[int], gaps: list[int], codes: list[int], cfg: CodecConfig, length: int,
            table: bytes = b"", n: int | None = None, orient: int = 0, pc: int = 0) -> bytes:
    """One tensor: count-Rice with ``pc``, gaps with p = floor(log2(length // count))."""
    bits = "".join(_bits(c, pc) for c in counts) + "".join("1" * (c >> pc) + "0" for c in counts)
    ps = [max(0, (length // c).bit_length() - 1) for c in counts if c for _ in range(c)]
    bits += "".join(_bits(g, p) for g, p in zip(gaps, ps, strict=False))
    bits += "".join("1" * (g >> p) + "0" for g, p in zip(gaps, ps, strict=False))
    bits += "".join(_bits(c, cfg.bits) for c in codes)
    stream = _stream(bits)
    n = len(gaps) if n is None else n
    return varint(n) + bytes([orient, pc]) + table + varint(len(stream)) + stream


def _payload(spec: dict, cfg: CodecConfig, *records: bytes) -> bytes:
    head = b"STUP" + struct.pack("<BIIBI", 2, cfg.chunk, cfg.topk, cfg.bits, len(spec))
    return head + spec_digest(spec) + b"".join(records)


def _f32(x: float) -> int:
    return int(np.array([x], "<f4").view("<u4")[0])


def test_hand_built_payload_decodes_as_specified() -> None:
    rec = _record([2], [1, 1], [_f32(0.5), _f32(-2.0)], RAW, 4)  # positions 1, 3
    update = decode(_payload({"t": (4,)}, RAW, rec), {"t": (4,)}, RAW)
    assert update["t"].indices.tolist() == [1, 3]
    assert update["t"].values.tolist() == [0.5, -2.0]
    # a 2x3 matrix coded by columns (flag 1): column 0 holds rows 0 and 1, column 2 row 1
    cfg = CodecConfig(chunk=4, topk=16, bits=32)
    rec = _record([2, 0, 1], [0, 0, 1], [_f32(1.0), _f32(2.0), _f32(3.0)], cfg, 2, orient=1)
    update = decode(_payload({"m": (2, 3)}, cfg, rec), {"m": (2, 3)}, cfg)
    assert update["m"].indices.tolist() == [0, 3, 5]
    assert update["m"].values.tolist() == [1.0, 2.0, 3.0]
    empty = decode(_payload({"t": (4,)}, RAW, varint(0)), {"t": (4,)}, RAW)["t"]
    assert empty.indices.tolist() == [] and empty.values.tolist() == []


def test_decode_rejects_bad_indices_and_values() -> None:
    spec = {"t": (4,)}
    cases = {
        "outside its line": _record([2], [1, 2], [0, 0], RAW, 4),  # positions 1, 4
        "sum": _record([3], [0, 0], [0, 0], RAW, 4, n=2),
        "out of range": _record([5], [0] * 5, [0] * 5, RAW, 4, n=4, pc=1),  # a count above the line length
        "longer than": _record([5], [0] * 5, [0] * 5, RAW, 4, n=4),  # same, as a too-long unary code
        "orientation": _record([1], [0], [0], RAW, 4, orient=1),
        "parameter": _record([1], [0], [0], RAW, 4, pc=40),
        "non-finite": _record([1], [0], [_f32(float("nan"))], RAW, 4),
    }
    for match, rec in cases.items():
        with pytest.raises(CodecError, match=match):
            decode(_payload(spec, RAW, rec), spec, RAW)
    one = CodecConfig(chunk=2, topk=1, bits=32)  # (8,): two blocks of 4, quota 1 each
    with pytest.raises(CodecError, match="quota"):
        decode(_payload({"t": (8,)}, one, _record([2], [0, 0], [0, 0], one, 8)), {"t": (8,)}, one)
    with pytest.raises(CodecError, match="quota"):
        decode(_payload({"t": (8,)}, one, _record([3], [0] * 3, [0] * 3, one, 8)), {"t": (8,)}, one)
    ok = _record([1], [1], [_f32(1.0)], RAW, 4)
    with pytest.raises(CodecError, match="padding|trailing"):
        decode(_payload(spec, RAW, ok[:-1] + bytes([ok[-1] | 0x80])), spec, RAW)
    longer = ok[:-6] + bytes([ok[-6] + 1]) + ok[-5:] + b"\0"  # stream_len one byte too long
    with pytest.raises(CodecError, match="padding|trailing"):
        decode(_payload(spec, RAW, longer), spec, RAW)
    q2 = CodecConfig(chunk=2, topk=4, bits=2)
    good_table = np.array([0.5, 1.5], "<f4").tobytes()
    assert decode(_payload(spec, q2, _record([1], [0], [0b01], q2, 4, table=good_table)), spec, q2)["t"].values.tolist() == [1.5]
    for table in ([float("nan"), 1.0], [-1.0, 1.0], [1.0, float("inf")]):
        bad = _record([1], [0], [0], q2, 4, table=np.array(table, "<f4").tobytes())
        with pytest.raises(CodecError, match="table"):
            decode(_payload(spec, q2, bad), spec, q2)


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


def test_docstring_examples() -> None:
    import doctest

    import protocol.bitpack
    import protocol.codec_wire
    import protocol.sparse

    for module in (protocol.bitpack, protocol.sparse, protocol.codec_wire):
        assert doctest.testmod(module).failed == 0, module.__name__
