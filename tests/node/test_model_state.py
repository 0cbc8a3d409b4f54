"""ModelState: θ_0, aggregate apply + hash check, desync error, save/load, payload format."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest
import torch

from node.model_state import ModelDesyncError, ModelState, ModelStateError
from protocol.aggregate_payload import AggregatePayloadError, decode_aggregate, encode_aggregate
from protocol.model import build_model, model_hash, preset
from protocol.outer import aggregate
from protocol.subnet import SubnetConfig

CFG = SubnetConfig(preset="tiny", outer_momentum=0.5)


def _sparse_update(state: ModelState, seed: int, density: float = 0.05) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in state.spec.items():
        dense = torch.randn(shape, generator=gen) * 1e-3
        mask = torch.rand(shape, generator=gen) < density
        out[name] = dense * mask
    return out


def _header(window: int, next_hash: str, contributors=(1,)) -> SimpleNamespace:
    return SimpleNamespace(window=window, contributors=list(contributors), next_model_hash=next_hash)


def test_initial_is_deterministic_from_seed():
    a, b = ModelState.initial(CFG), ModelState.initial(CFG)
    assert a.hash() == b.hash() and a.window == 0
    seed = int.from_bytes(hashlib.sha256(CFG.seed.encode()).digest()[:8], "big")  # the published rule
    expected = build_model(preset("tiny"), seed=seed)
    assert a.hash() == model_hash(expected)
    assert ModelState.initial(SubnetConfig(preset="tiny", seed="other")).hash() != a.hash()


def test_payload_keeps_every_entry_at_8_bits_and_decodes_deterministically():
    state = ModelState.initial(CFG)
    update = aggregate([_sparse_update(state, 1), _sparse_update(state, 2)], per_position=True)
    data = encode_aggregate(update, state.spec)
    back = decode_aggregate(data, state.spec)
    again = decode_aggregate(data, state.spec)
    assert all(torch.equal(back[n], again[n]) for n in state.spec)  # same bytes, same tensors
    for n in state.spec:
        assert torch.equal(back[n] != 0, update[n] != 0), n  # the union of supports, nothing dropped
    err = sum(float((back[n] - update[n]).pow(2).sum()) for n in state.spec)
    ref = sum(float(update[n].pow(2).sum()) for n in state.spec)
    assert err ** 0.5 < 0.03 * ref ** 0.5
    dense_fp32 = 8 * sum(int((update[n] != 0).sum()) for n in state.spec)  # u32 index + f32 value
    assert len(data) * 3 < dense_fp32


def test_payload_refuses_non_finite_input():
    spec = {"a": (2, 3)}
    with pytest.raises(AggregatePayloadError):
        encode_aggregate({"a": torch.full((2, 3), float("nan"))}, spec)
    with pytest.raises(AggregatePayloadError):
        encode_aggregate({"a": torch.ones(2, 3), "zzz": torch.ones(1)}, spec)


@pytest.mark.parametrize("mutate", ["truncate", "magic", "trailing", "shape", "names"])
def test_payload_rejects_garbage(mutate):
    spec = {"a": (2, 3), "b": (4,)}
    data = bytearray(encode_aggregate({"a": torch.ones(2, 3), "b": torch.tensor([0.0, 2.0, 0.0, 3.0])}, spec))
    if mutate == "truncate":
        data = data[:-3]
    elif mutate == "magic":
        data[0] ^= 1
    elif mutate == "trailing":
        data += b"\0"
    elif mutate == "shape":
        spec = {"a": (3, 2), "b": (4,)}
    elif mutate == "names":
        spec = {"a": (2, 3), "c": (4,)}
    with pytest.raises(AggregatePayloadError):
        decode_aggregate(bytes(data), spec)


def test_two_nodes_apply_same_aggregate_to_same_hash():
    lead, follower = ModelState.initial(CFG), ModelState.initial(CFG)
    for w in range(3):
        payload = encode_aggregate(aggregate([_sparse_update(lead, 10 + w), _sparse_update(lead, 20 + w)]), lead.spec)
        new_hash = lead.apply_payload(w, payload)
        assert follower.apply_aggregate(_header(w, new_hash), payload) == new_hash
    assert lead.window == follower.window == 3
    assert lead.hash() == follower.hash() != ModelState.initial(CFG).hash()


def test_desync_raises_and_leaves_state_unchanged():
    state = ModelState.initial(CFG)
    payload = encode_aggregate(_sparse_update(state, 3), state.spec)
    before = state.hash()
    with pytest.raises(ModelDesyncError, match="published"):
        state.apply_aggregate(_header(0, "ff" * 32), payload)
    assert state.hash() == before and state.window == 0 and state.outer.buffers == {}
    with pytest.raises(ValueError, match="window"):
        state.apply_aggregate(_header(5, before), payload)


def test_empty_aggregate_keeps_weights():
    state = ModelState.initial(CFG)
    h = state.hash()
    assert state.apply_aggregate(_header(0, h, contributors=()), b"") == h
    assert state.window == 1


def test_save_load_round_trip_with_momentum(tmp_path):
    state = ModelState.initial(CFG)
    for w in range(2):
        state.apply_payload(w, encode_aggregate(_sparse_update(state, w), state.spec))
    path = tmp_path / "m.safetensors"
    assert state.save(path) == state.hash()
    loaded = ModelState.load(path, CFG)
    assert (loaded.window, loaded.hash()) == (2, state.hash())
    assert set(loaded.outer.buffers) == set(state.outer.buffers)
    # both continue identically (momentum restored)
    nxt = encode_aggregate(_sparse_update(state, 99), state.spec)
    assert loaded.apply_payload(2, nxt) == state.apply_payload(2, nxt)
    assert ModelState.from_bytes(state.to_bytes(), CFG).hash() == state.hash()


def test_load_rejects_other_config_and_tampering(tmp_path):
    state = ModelState.initial(CFG)
    path = tmp_path / "m.safetensors"
    state.save(path)
    with pytest.raises(ModelStateError, match="another subnet"):
        ModelState.load(path, SubnetConfig(preset="tiny", seed="different"))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40  # flip a bit in the last weight
    path.write_bytes(bytes(data))
    with pytest.raises(ModelStateError, match="hash"):
        ModelState.load(path, CFG)
    with pytest.raises(ModelStateError):
        ModelState.load(tmp_path / "missing", CFG)


def test_hash_is_computed_once_per_version_of_the_weights(monkeypatch):
    import node.model_state as ms

    calls = []

    def counting(model):
        calls.append(1)
        return model_hash(model)

    monkeypatch.setattr(ms, "model_hash", counting)
    state = ModelState.initial(CFG)
    first = state.hash()
    assert state.hash() == first and len(calls) == 1  # asked twice, hashed once
    payload = encode_aggregate(_sparse_update(state, 1), state.spec)
    second = state.apply_payload(0, payload)
    assert second != first and state.hash() == second and len(calls) == 2
    with torch.no_grad():
        next(state.model.parameters()).add_(1.0)  # a write that bypasses ModelState
    assert state.hash() not in (first, second) and len(calls) == 3
