"""node.model_file: a model without a subnet (what `swarmtrain import --hf` writes) round-trips
and refuses tampered weights, a config that does not fit, and garbage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from node.model_file import ModelFileError, load_model_file, save_model_file
from protocol.model import build_model, model_hash, param_spec, preset

TINY = preset("tiny")


def test_round_trip(tmp_path: Path) -> None:
    model = build_model(TINY, seed=5)
    path = tmp_path / "ck.safetensors"
    digest = save_model_file(path, model, TINY, {"window": 12})
    state, cfg, extra = load_model_file(path)
    assert cfg == TINY and extra == {"window": 12}
    assert digest == model_hash(state) == model_hash(model)
    assert set(state) == set(param_spec(model))
    fresh = build_model(TINY, seed=0)
    fresh.load_state_dict(state)
    assert model_hash(fresh) == digest
    assert [p.name for p in tmp_path.iterdir()] == ["ck.safetensors"]  # no temporary file left


def _rewrite(path: Path, edit: Any) -> None:
    """Rewrite a safetensors file after ``edit(header: dict, data: bytearray)``."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header, data = json.loads(raw[8 : 8 + n]), bytearray(raw[8 + n :])
    edit(header, data)
    hb = json.dumps(header).encode()
    path.write_bytes(len(hb).to_bytes(8, "little") + hb + bytes(data))


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "ck.safetensors"
    save_model_file(path, build_model(TINY), TINY, {})

    def flip(header: dict, data: bytearray) -> None:
        start = header["norm.weight"]["data_offsets"][0]
        data[start + 1] ^= 0x40

    _rewrite(path, flip)
    with pytest.raises(ModelFileError, match="hash mismatch"):
        load_model_file(path)


def test_config_mismatch_and_garbage_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "ck.safetensors"
    save_model_file(path, build_model(TINY), TINY, {})

    def swap_cfg(header: dict, data: bytearray) -> None:
        cfg = json.loads(header["__metadata__"]["swarmtrain.model_config"])
        header["__metadata__"]["swarmtrain.model_config"] = json.dumps(cfg | {"n_layers": 3})

    _rewrite(path, swap_cfg)
    with pytest.raises(ModelFileError, match="does not match config"):
        load_model_file(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="cannot read"):
        load_model_file(path)
