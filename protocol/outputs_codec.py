"""Wire format of a miner's teacher outputs (outputs mode), version 1: docs/outputs.md, *Bytes*.

For every position of every delivered sample the payload holds the teacher's top-k token
ids (most probable first), their log-probabilities and the log of the remaining mass, each
log-probability quantized to ``bits`` bits (``protocol.distill.quantize``). Fixed-width fields
in one little-endian bit stream (``protocol.bitpack``), so the size follows from the header
and the decoder checks every byte. No pickle, nothing executable.

Example:
    >>> spec = OutputsSpec(topk=2, bits=8, vocab_size=5, seq_len=1, max_samples=4, teacher_digest=bytes(8))
    >>> out = TeacherOutputs(np.array([[[1, 3]]]), np.array([[[1, 40]]]), np.array([[60]]))
    >>> decode(encode(out, spec), spec).ids.tolist()
    [[[1, 3]]]
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from protocol.bitpack import BitReader, BitstreamError, BitWriter

MAGIC = b"STOU"
VERSION = 1
_HEADER = struct.Struct("<4sBHBIII8s")  # magic, version, topk, bits, vocab, seq_len, n_samples, digest
HEADER_BYTES = _HEADER.size  # 28
DEFAULT_MAX_PAYLOAD_BYTES = 2**31 - 1
LOGPROB_RANGE = 16.0  # nats: log-probabilities are quantized over [-16, 0]


def quant_step(bits: int) -> float:
    """Nats per quantization level: ``16 / 2**bits`` (1/16 nat at 8 bits)."""
    return LOGPROB_RANGE / (1 << bits)


class OutputsCodecError(ValueError):
    """Outputs bytes are malformed, of another subnet's shape, or inconsistent."""


@dataclass(frozen=True)
class OutputsSpec:
    """What sender and receiver must agree on (from the subnet config, ``protocol.distill.outputs_spec``).

    ``max_samples``: samples assigned per uid and window (a payload delivers 1..max of them).
    ``teacher_digest``: the first 8 bytes of the teacher's model hash.
    """

    topk: int
    bits: int
    vocab_size: int
    seq_len: int
    max_samples: int
    teacher_digest: bytes
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES

    @property
    def id_bits(self) -> int:
        """Width of a token id field: enough bits for ``vocab_size - 1``."""
        return max(1, (self.vocab_size - 1).bit_length())

    def payload_bytes(self, n_samples: int) -> int:
        """The exact length of a payload delivering ``n_samples`` samples."""
        positions = n_samples * self.seq_len
        bits = positions * (self.topk * (self.id_bits + self.bits) + self.bits)
        return HEADER_BYTES + (bits + 7) // 8


@dataclass(frozen=True)
class TeacherOutputs:
    """Decoded outputs of ``n`` samples: ``ids`` (n, T, k) in rank order, ``q`` (n, T, k) the
    quantized log-probabilities of those ids, ``rest_q`` (n, T) that of the remaining mass.

    ``q`` is non-decreasing along k (most probable first); equal ``q`` come in ascending id.
    """

    ids: np.ndarray
    q: np.ndarray
    rest_q: np.ndarray

    @property
    def n_samples(self) -> int:
        return int(self.ids.shape[0])

    @property
    def positions(self) -> int:
        return int(self.ids.shape[0] * self.ids.shape[1])

    def head(self, n: int) -> TeacherOutputs:
        """The first ``n`` samples."""
        return TeacherOutputs(self.ids[:n], self.q[:n], self.rest_q[:n])


def encode(out: TeacherOutputs, spec: OutputsSpec) -> bytes:
    """Bytes of ``out`` (shapes and value ranges checked; the order is the caller's, canonical
    when made by ``protocol.distill.teacher_topk``)."""
    n = _check_shapes(out, spec)
    header = _HEADER.pack(MAGIC, VERSION, spec.topk, spec.bits, spec.vocab_size, spec.seq_len, n,
                          spec.teacher_digest)
    w = BitWriter()
    w.fields(np.asarray(out.ids, dtype=np.int64).reshape(-1), spec.id_bits)
    w.fields(np.asarray(out.q, dtype=np.int64).reshape(-1), spec.bits)
    w.fields(np.asarray(out.rest_q, dtype=np.int64).reshape(-1), spec.bits)
    return header + w.getvalue()


def _check_shapes(out: TeacherOutputs, spec: OutputsSpec) -> int:
    n = out.n_samples
    if not 1 <= n <= spec.max_samples:
        raise OutputsCodecError(f"{n} samples: a payload delivers 1..{spec.max_samples}")
    if out.ids.shape != (n, spec.seq_len, spec.topk) or out.q.shape != out.ids.shape or out.rest_q.shape != (n, spec.seq_len):
        raise OutputsCodecError(f"shapes {out.ids.shape}/{out.q.shape}/{out.rest_q.shape} do not fit "
                                f"(n, {spec.seq_len}, {spec.topk})")
    top = (1 << spec.bits) - 1
    for name, arr, hi in (("ids", out.ids, spec.vocab_size - 1), ("q", out.q, top), ("rest_q", out.rest_q, top)):
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > hi):
            raise OutputsCodecError(f"{name} outside 0..{hi}")
    return n


def read_header(data: bytes, spec: OutputsSpec) -> int:
    """Check the header against ``spec`` and the total length; returns the sample count."""
    if len(data) > spec.max_payload_bytes:
        raise OutputsCodecError(f"payload of {len(data)} bytes exceeds {spec.max_payload_bytes}")
    if len(data) < HEADER_BYTES:
        raise OutputsCodecError(f"payload of {len(data)} bytes is shorter than the {HEADER_BYTES}-byte header")
    magic, version, topk, bits, vocab, seq_len, n, digest = _HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise OutputsCodecError(f"not an outputs payload of version {VERSION} (magic {magic!r}, version {version})")
    got, want = (topk, bits, vocab, seq_len), (spec.topk, spec.bits, spec.vocab_size, spec.seq_len)
    if got != want:
        raise OutputsCodecError(f"topk/bits/vocab/seq_len {got} differ from the subnet's {want}")
    if digest != spec.teacher_digest:
        raise OutputsCodecError(f"made with teacher {digest.hex()}…, the subnet's teacher is {spec.teacher_digest.hex()}…")
    if not 1 <= n <= spec.max_samples:
        raise OutputsCodecError(f"{n} samples: a payload delivers 1..{spec.max_samples}")
    if len(data) != spec.payload_bytes(n):
        raise OutputsCodecError(f"{len(data)} bytes, but {n} samples take exactly {spec.payload_bytes(n)}")
    return int(n)


def decode(data: bytes, spec: OutputsSpec) -> TeacherOutputs:
    """Strict inverse of ``encode``; every failure is an ``OutputsCodecError`` (see docs/outputs.md)."""
    n = read_header(data, spec)
    shape = (n, spec.seq_len, spec.topk)
    count = n * spec.seq_len * spec.topk
    try:
        r = BitReader(bytes(data[HEADER_BYTES:]))
        ids = r.fields(count, spec.id_bits, "token ids").reshape(shape)
        q = r.fields(count, spec.bits, "log-probabilities").reshape(shape)
        rest_q = r.fields(n * spec.seq_len, spec.bits, "remaining mass").reshape(shape[:2])
        r.finish()
    except BitstreamError as exc:
        raise OutputsCodecError(str(exc)) from exc
    out = TeacherOutputs(ids.astype(np.int32), q.astype(np.int16), rest_q.astype(np.int16))
    _check_values(out, spec)
    return out


def _check_values(out: TeacherOutputs, spec: OutputsSpec) -> None:
    """Ids in the vocabulary and distinct per position; rank order (q, then id, strictly increasing);
    dequantized probabilities summing to 1 within the quantization bound."""
    if out.ids.size and int(out.ids.max()) >= spec.vocab_size:
        raise OutputsCodecError(f"a token id is outside the vocabulary of {spec.vocab_size}")
    key = out.q.astype(np.int64) * spec.vocab_size + out.ids
    if spec.topk > 1 and not bool((np.diff(key, axis=-1) > 0).all()):
        raise OutputsCodecError("ids of a position are not in rank order (q, then id, ascending)")
    if spec.topk > 1 and not bool((np.diff(np.sort(out.ids, axis=-1), axis=-1) > 0).all()):
        raise OutputsCodecError("an id is listed twice at one position")
    step = quant_step(spec.bits)
    total = np.exp(-step * out.q.astype(np.float64)).sum(axis=-1) + np.exp(-step * out.rest_q.astype(np.float64))
    lo, hi = np.exp(-step), np.exp(step) + (spec.topk + 1) * np.exp(-15.0)
    bad = ~((total >= lo) & (total <= hi))
    if bad.any():
        i = np.argwhere(bad)[0]
        raise OutputsCodecError(f"probabilities at sample {i[0]} position {i[1]} sum to {total[tuple(i)]:.4f}, not 1")


__all__ = ["HEADER_BYTES", "LOGPROB_RANGE", "MAGIC", "OutputsCodecError", "OutputsSpec", "TeacherOutputs", "VERSION",
           "decode", "encode", "quant_step", "read_header"]
