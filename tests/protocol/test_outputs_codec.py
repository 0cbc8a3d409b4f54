"""protocol.outputs_codec: round trip, exact sizes, and every refusal of the strict decoder."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from protocol.distill import teacher_topk
from protocol.outputs_codec import (
    HEADER_BYTES,
    OutputsCodecError,
    OutputsSpec,
    TeacherOutputs,
    decode,
    encode,
    read_header,
)

SPEC = OutputsSpec(topk=4, bits=8, vocab_size=264, seq_len=6, max_samples=5, teacher_digest=bytes(range(8)))


def sample_outputs(n: int = 3, seed: int = 0) -> TeacherOutputs:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, SPEC.seq_len, SPEC.vocab_size, generator=gen) * 3
    return teacher_topk(torch.log_softmax(logits, -1), SPEC.topk, SPEC.bits)


def test_round_trip_and_exact_size() -> None:
    out = sample_outputs()
    data = encode(out, SPEC)
    assert len(data) == SPEC.payload_bytes(3) == HEADER_BYTES + (3 * 6 * (4 * (9 + 8) + 8) + 7) // 8
    back = decode(data, SPEC)
    for name in ("ids", "q", "rest_q"):
        assert np.array_equal(getattr(back, name), getattr(out, name))
    assert read_header(data, SPEC) == 3 and back.positions == 18
    assert encode(back, SPEC) == data  # deterministic bytes


def _header(data: bytes, **changes: object) -> bytes:
    fields = dict(zip(("magic", "version", "topk", "bits", "vocab", "seq_len", "n", "digest"),
                      struct.unpack_from("<4sBHBIII8s", data), strict=True))
    fields.update(changes)
    return struct.pack("<4sBHBIII8s", *fields.values()) + data[HEADER_BYTES:]


@pytest.mark.parametrize(("change", "match"), [
    ({"magic": b"STUP"}, "not an outputs payload"),
    ({"version": 2}, "not an outputs payload"),
    ({"topk": 5}, "differ from the subnet"),
    ({"bits": 6}, "differ from the subnet"),
    ({"vocab": 300}, "differ from the subnet"),
    ({"seq_len": 7}, "differ from the subnet"),
    ({"digest": bytes(8)}, "teacher"),
    ({"n": 0}, "1..5"),
    ({"n": 6}, "1..5"),
    ({"n": 2}, "take exactly"),
])
def test_header_refusals(change: dict, match: str) -> None:
    data = encode(sample_outputs(), SPEC)
    with pytest.raises(OutputsCodecError, match=match):
        decode(_header(data, **change), SPEC)


def test_truncated_trailing_and_padding() -> None:
    data = encode(sample_outputs(), SPEC)
    for bad in (data[:-1], data + b"\0", data[:10], b""):
        with pytest.raises(OutputsCodecError):
            decode(bad, SPEC)
    bits = 3 * 6 * (4 * 17 + 8)
    if bits % 8:  # a set padding bit
        with pytest.raises(OutputsCodecError, match="padding"):
            decode(data[:-1] + bytes([data[-1] | 0x80]), SPEC)
    with pytest.raises(OutputsCodecError, match="exceeds"):
        decode(data, OutputsSpec(**{**SPEC.__dict__, "max_payload_bytes": 64}))


def _with(out: TeacherOutputs, **arrays: np.ndarray) -> bytes:
    """Encode without the encoder's range checks (what a hostile sender can do)."""
    parts = {"ids": out.ids, "q": out.q, "rest_q": out.rest_q, **arrays}
    from protocol.bitpack import BitWriter

    w = BitWriter()
    w.fields(np.asarray(parts["ids"]).reshape(-1), SPEC.id_bits)
    w.fields(np.asarray(parts["q"]).reshape(-1), SPEC.bits)
    w.fields(np.asarray(parts["rest_q"]).reshape(-1), SPEC.bits)
    return encode(out, SPEC)[:HEADER_BYTES] + w.getvalue()


def test_content_refusals() -> None:
    out = sample_outputs()
    ids = out.ids.copy()
    ids[0, 0, 0] = 300  # outside the vocabulary (9-bit field holds up to 511)
    with pytest.raises(OutputsCodecError, match="vocabulary"):
        decode(_with(out, ids=ids), SPEC)
    ids = out.ids.copy()
    ids[1, 2, 1] = ids[1, 2, 0]  # repeated id
    with pytest.raises(OutputsCodecError, match="listed twice|rank order"):
        decode(_with(out, ids=ids), SPEC)
    q = out.q.copy()
    q[0, 1] = q[0, 1][::-1]  # least probable first
    with pytest.raises(OutputsCodecError, match="rank order"):
        decode(_with(out, q=q), SPEC)
    with pytest.raises(OutputsCodecError, match="sum to"):  # every listed id at probability 1
        decode(_with(out, q=np.zeros_like(out.q), ids=np.sort(out.ids, axis=-1)), SPEC)
    with pytest.raises(OutputsCodecError, match="sum to"):  # everything at the clip
        decode(_with(out, q=np.full_like(out.q, 255), rest_q=np.full_like(out.rest_q, 255),
                     ids=np.sort(out.ids, axis=-1)), SPEC)


def test_encoder_refuses_what_decode_would() -> None:
    out = sample_outputs()
    with pytest.raises(OutputsCodecError, match="samples"):
        encode(sample_outputs(n=6), SPEC)
    with pytest.raises(OutputsCodecError, match="shapes"):
        encode(TeacherOutputs(out.ids[:, :, :3], out.q[:, :, :3], out.rest_q), SPEC)
    with pytest.raises(OutputsCodecError, match="q outside"):
        encode(TeacherOutputs(out.ids, out.q + 300, out.rest_q), SPEC)
