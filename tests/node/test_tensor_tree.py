"""Nested state <-> flat tensors + JSON skeleton: round trips, key types, refusals, older files."""

import json

import pytest
import torch

from node.tensor_tree import TensorTreeError, flatten, unflatten


def test_roundtrip_keeps_int_keys_and_tensors():
    tree = {"state": {0: {"step": torch.tensor(3.0), "m": torch.ones(2)}}, "groups": [{"lr": 0.1, "betas": (0.9, 0.95)}]}
    tensors, skeleton = flatten(tree)
    back = unflatten(json.loads(json.dumps(skeleton)), tensors)
    assert list(back["state"]) == [0]
    assert torch.equal(back["state"][0]["m"], torch.ones(2))
    assert back["groups"][0]["betas"] == [0.9, 0.95]


def test_string_keyed_dicts_keep_the_model_state_layout():
    # ModelState's outer-optimizer metadata has always been this shape: files stay readable.
    tensors, skeleton = flatten({"lr": 1.5, "nesterov": False, "buffers": {"layers.0.w": torch.zeros(2)}})
    assert list(tensors) == ["buffers/layers.0.w"]
    assert skeleton == {"lr": 1.5, "nesterov": False, "buffers": {"layers.0.w": {"__tensor__": "buffers/layers.0.w"}}}


def test_the_typed_key_form_of_older_miner_states_still_reads():
    skeleton = {"__dict__": [["str", "state", {"__dict__": [["int", "0", {"__dict__": [
        ["str", "m", {"__tensor__": "state.0.m"}]]}]]}], ["str", "step", 3]]}
    back = unflatten(skeleton, {"state.0.m": torch.ones(1)})
    assert back["step"] == 3 and torch.equal(back["state"][0]["m"], torch.ones(1))


@pytest.mark.parametrize("bad", [{"x": object()}, {(1, 2): torch.zeros(1)}, {1: torch.zeros(1), "1": torch.ones(1)}])
def test_what_cannot_be_stored_is_refused(bad):
    with pytest.raises(TensorTreeError):
        flatten(bad)


def test_a_missing_tensor_is_an_error():
    with pytest.raises(TensorTreeError, match="lacks tensor 'w'"):
        unflatten({"a": {"__tensor__": "w"}}, {})
