"""Wire format of a published aggregate: the update codec at full density and 8-bit values.

Miners' updates travel as top-k, low-bit ``protocol.codec`` payloads; the aggregate the lead
validator publishes is their clipped mean, whose support is the union of the contributors'
positions (≈ G × 1.2 % of the entries). It is sent with the same codec, keeping every
non-zero entry (``topk = chunk²``: line-coded positions) with 8-bit values from a per-tensor
table: about 5× fewer bytes than positions plus fp32 values, at ≈ 1 % relative error.

Nodes stay bit-identical because nobody applies the lead's dense mean: the lead, like every
other node, applies the *decoded* bytes (``validator.aggregation`` computes
``next_model_hash`` that way), and decoding is a table lookup, exact on any machine. The
format is a rule every node must agree on, so it lives here and nowhere else.

Example:
    >>> data = encode_aggregate({"w": torch.tensor([0.0, 1.5])}, {"w": (2,)})
    >>> decode_aggregate(data, {"w": (2,)})["w"]
    tensor([0.0000, 1.5000])
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from protocol import codec

AGGREGATE_CODEC = codec.CodecConfig(chunk=64, topk=64 * 64, bits=8, max_payload_bytes=2**31 - 1)


class AggregatePayloadError(ValueError):
    """Aggregate bytes are malformed or do not fit the model's parameter spec."""


def encode_aggregate(update: Mapping[str, Tensor], spec: Mapping[str, tuple[int, ...]]) -> bytes:
    """Dense fp32 tensors (one per spec entry; missing = zero) -> bytes."""
    dense: dict[str, Tensor] = {}
    for name, shape in spec.items():
        t = update.get(name)
        if t is None:
            t = torch.zeros(shape, dtype=torch.float32)
        if tuple(t.shape) != tuple(shape):
            raise AggregatePayloadError(f"{name}: shape {tuple(t.shape)} != spec {tuple(shape)}")
        dense[name] = t.detach().to("cpu", torch.float32)
    unknown = set(update) - set(spec)
    if unknown:
        raise AggregatePayloadError(f"aggregate has tensors the model lacks: {sorted(unknown)}")
    try:
        return codec.encode(codec.compress(dense, AGGREGATE_CODEC), AGGREGATE_CODEC)
    except codec.CodecError as exc:  # NaN/Inf in the mean
        raise AggregatePayloadError(f"cannot encode the aggregate: {exc}") from exc


def decode_aggregate_sparse(data: bytes, spec: Mapping[str, tuple[int, ...]]) -> codec.SparseUpdate:
    """Bytes -> the kept entries per tensor (as a miner's update decodes); validates everything."""
    try:
        return codec.decode(data, spec, AGGREGATE_CODEC)
    except codec.CodecError as exc:
        raise AggregatePayloadError(f"invalid aggregate payload: {exc}") from exc


def decode_aggregate(data: bytes, spec: Mapping[str, tuple[int, ...]]) -> dict[str, Tensor]:
    """Bytes -> dense fp32 tensors exactly shaped as ``spec``; validates everything."""
    return codec.decompress(decode_aggregate_sparse(data, spec), spec)
