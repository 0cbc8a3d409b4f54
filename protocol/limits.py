"""How many bytes a node reads, at most, for each thing a validator publishes.

Derived from the subnet config alone (the model's parameter list and the codecs), so every
node computes the same bounds and a validator that sends more is cut off at the bound:

- an aggregate envelope: the header bound plus ``codec_wire.max_encoded_bytes`` of the
  model's spec under the aggregate codec (every parameter kept at 8 bits);
- a submission body: the header bound plus the same bound under the subnet's update codec;
- a checkpoint file: two fp32 copies of every parameter (weights and the outer optimizer's
  momentum) plus 1 MiB of safetensors header and metadata;
- a checkpoint manifest or a subnet config: ``MAX_DOCUMENT_BYTES``.

Example:
    >>> from protocol.subnet import SubnetConfig
    >>> limits = response_limits(SubnetConfig(preset="tiny"))
    >>> limits.parameters, limits.checkpoint > 8 * limits.parameters
    (126272, True)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from protocol.aggregate_payload import AGGREGATE_CODEC
from protocol.codec_wire import max_encoded_bytes
from protocol.messages import MAX_HEADER_BYTES
from protocol.model import expected_spec, subnet_model_config
from protocol.subnet import SubnetConfig

MAX_DOCUMENT_BYTES = 64 * 1024  # a checkpoint manifest, a subnet config, an error body
_ENVELOPE_OVERHEAD = 4 + MAX_HEADER_BYTES  # length prefix and header JSON
_CHECKPOINT_OVERHEAD = 1 << 20  # safetensors header (names, shapes, offsets) and metadata
_CHECKPOINT_COPIES = 2  # weights and the outer optimizer's momentum, fp32 each


@dataclass(frozen=True)
class ResponseLimits:
    """Byte bounds (see the module docstring); ``parameters``: the model's parameter count."""

    parameters: int
    aggregate: int
    submission: int
    checkpoint: int
    document: int = MAX_DOCUMENT_BYTES


@functools.lru_cache(maxsize=16)
def _limits(cfg_json: str) -> ResponseLimits:
    cfg = SubnetConfig.model_validate_json(cfg_json)
    spec = expected_spec(subnet_model_config(cfg))
    params = sum(math.prod(shape) for shape in spec.values())
    return ResponseLimits(
        parameters=params,
        aggregate=_ENVELOPE_OVERHEAD + max_encoded_bytes(spec, AGGREGATE_CODEC),
        submission=_ENVELOPE_OVERHEAD + max_encoded_bytes(spec, cfg.codec_config()),
        checkpoint=_CHECKPOINT_OVERHEAD + _CHECKPOINT_COPIES * 4 * params,
    )


def response_limits(cfg: SubnetConfig) -> ResponseLimits:
    """The bounds for ``cfg`` (cached per config)."""
    return _limits(cfg.model_dump_json())
