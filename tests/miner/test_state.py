"""Miner checkpoints: round trip of model, inner AdamW and error feedback; crash safety."""

import os

import pytest
import torch

from miner.state import MinerState, MinerStateError, MinerStateStore
from miner.trainer import InnerTrainer
from node.model_state import ModelState
from protocol import codec
from protocol.model import preset
from protocol.subnet import SubnetConfig

CFG = SubnetConfig(preset="tiny", dataset_hash="")


def _batches(n: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (2, 17), generator=g) for _ in range(n)]


def _trained_state() -> tuple[MinerState, InnerTrainer, codec.ErrorFeedback]:
    model = ModelState.initial(CFG)
    trainer = InnerTrainer(preset("tiny"), lr=1e-3)
    result = trainer.train(model.params(), _batches())
    ef = codec.ErrorFeedback(CFG.error_feedback_beta)
    ef.step(result.delta, CFG.codec_config())
    model.window = 4
    return MinerState(model, trainer.optimizer_state(), ef.state_dict()), trainer, ef


def _assert_tree_equal(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert set(map(str, a)) == set(map(str, b))
        for k in a:
            _assert_tree_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_tree_equal(x, y)
    else:
        assert a == b


def test_save_load_roundtrip(tmp_path):
    state, trainer, ef = _trained_state()
    store = MinerStateStore(tmp_path)
    store.save(state)
    loaded = store.load(CFG)
    assert loaded is not None
    assert loaded.window == 4
    assert loaded.model.hash() == state.model.hash()
    _assert_tree_equal(state.inner_optimizer["state"], loaded.inner_optimizer["state"])
    _assert_tree_equal(state.error_feedback, loaded.error_feedback)
    # The loaded state plugs back into a trainer and an error-feedback buffer.
    fresh = InnerTrainer(preset("tiny"), lr=1e-3)
    fresh.load_optimizer_state(loaded.inner_optimizer)
    ef2 = codec.ErrorFeedback(CFG.error_feedback_beta)
    ef2.load_state_dict(loaded.error_feedback)
    a = trainer.train(state.model.params(), _batches(1))
    b = fresh.train(state.model.params(), _batches(1))
    for name in a.delta:
        torch.testing.assert_close(a.delta[name], b.delta[name])


def test_empty_store_and_other_config(tmp_path):
    store = MinerStateStore(tmp_path)
    assert store.load(CFG) is None
    state, _, _ = _trained_state()
    store.save(state)
    with pytest.raises(MinerStateError, match="another --state directory"):
        store.load(CFG.model_copy(update={"seed": "other"}))


def test_keeps_newest_and_survives_a_crash_mid_save(tmp_path, monkeypatch):
    state, _, _ = _trained_state()
    store = MinerStateStore(tmp_path, keep=2)
    for w in (4, 5, 6):
        state.model.window = w
        store.save(state)
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-0000000005", "ckpt-0000000006"]
    # A crash while writing window 7 (after the model file, before the rename) keeps 6 loadable.
    state.model.window = 7

    def crash(*_a, **_k):
        raise OSError("disk died")

    monkeypatch.setattr("miner.state.safetensors_save", crash)
    with pytest.raises(OSError):
        store.save(state)
    loaded = store.load(CFG)
    assert loaded is not None and loaded.window == 6
    assert not list(tmp_path.glob(".tmp-*"))  # the half-written directory is gone


def test_damaged_model_is_refused(tmp_path):
    state, _, _ = _trained_state()
    store = MinerStateStore(tmp_path)
    directory = store.save(state)
    model_file = directory / "model.safetensors"
    data = bytearray(model_file.read_bytes())
    data[-5] ^= 0xFF
    os.chmod(model_file, 0o644)
    model_file.write_bytes(bytes(data))
    with pytest.raises(Exception, match="hash|model"):
        store.load(CFG)
