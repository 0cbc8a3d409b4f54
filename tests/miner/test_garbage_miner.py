"""The faulty miner used by the end-to-end test really sends what a validator must refuse."""

import pytest
import torch

from protocol import codec
from protocol.model import build_model, param_spec, preset
from tests.miner.garbage_miner import nan_payload


def test_nan_payload_is_well_formed_except_for_the_nan():
    model = build_model(preset("tiny"))
    cfg = codec.CodecConfig()
    gen = torch.Generator().manual_seed(1)
    update = codec.compress({n: torch.randn(p.shape, generator=gen) for n, p in model.named_parameters()}, cfg)
    honest = codec.encode(update, cfg)
    poisoned = nan_payload(update, cfg)
    assert len(poisoned) == len(honest) and poisoned != honest
    codec.decode(honest, param_spec(model), cfg)
    with pytest.raises(codec.CodecError, match="finite"):
        codec.decode(poisoned, param_spec(model), cfg)
