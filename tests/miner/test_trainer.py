"""The inner loop: Δ has θ_w's shapes, points from θ_local back to θ_w, and loss falls."""

import pytest
import torch

from miner.trainer import (
    DeviceUnavailableError,
    InnerTrainer,
    resolve_device,
    split_batches,
)
from protocol.model import build_model, lm_loss, preset


def _repeating_batches(steps: int, batch: int = 4, seq: int = 32) -> list[torch.Tensor]:
    # A short periodic token pattern: easy to learn, so the loss must fall quickly.
    pattern = torch.arange(seq + 1) % 7 + 40
    sample = pattern.unsqueeze(0).repeat(batch, 1)
    return [sample.clone() for _ in range(steps)]


def _base() -> dict[str, torch.Tensor]:
    model = build_model(preset("tiny"), seed=3)
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_delta_is_base_minus_local_with_same_shapes():
    base = _base()
    trainer = InnerTrainer(preset("tiny"), lr=3e-3, device="cpu")
    result = trainer.train(base, _repeating_batches(5))
    assert set(result.delta) == set(base)
    for name, param in trainer.model.named_parameters():
        assert result.delta[name].shape == base[name].shape
        assert result.delta[name].dtype == torch.float32
        torch.testing.assert_close(result.delta[name], base[name] - param.detach(), rtol=0, atol=0)
    assert sum(float(d.abs().sum()) for d in result.delta.values()) > 0


def test_applying_minus_delta_reproduces_the_trained_model_and_lowers_loss():
    base = _base()
    batches = _repeating_batches(30)
    trainer = InnerTrainer(preset("tiny"), lr=3e-3, device="cpu")
    result = trainer.train(base, batches)
    assert len(result.losses) == 30
    assert result.last_loss < 0.7 * result.first_loss
    # θ_w − Δ is the locally trained model: its loss on the batch is below θ_w's.
    model = build_model(preset("tiny"))
    model.load_state_dict({n: base[n] - result.delta[n] for n in base}, strict=False)
    start = build_model(preset("tiny"))
    start.load_state_dict(base, strict=False)
    with torch.no_grad():
        assert float(lm_loss(model, batches[0])) < float(lm_loss(start, batches[0]))


def test_each_window_restarts_from_the_given_base():
    base = _base()
    trainer = InnerTrainer(preset("tiny"), lr=3e-3, device="cpu")
    trainer.train(base, _repeating_batches(3))
    second = trainer.train(base, _repeating_batches(1))
    # One step from θ_w: the first loss equals θ_w's loss, not the trained model's.
    start = build_model(preset("tiny"))
    start.load_state_dict(base, strict=False)
    with torch.no_grad():
        expected = float(lm_loss(start, _repeating_batches(1)[0]))
    assert second.first_loss == pytest.approx(expected, rel=1e-5)


def test_step_callback_sees_every_step():
    seen = []
    InnerTrainer(preset("tiny"), lr=1e-3).train(_base(), _repeating_batches(4), on_step=lambda i, n, loss: seen.append((i, n)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_split_batches():
    samples = torch.arange(10 * 5).reshape(10, 5)
    parts = split_batches(samples, 4)
    assert [p.shape[0] for p in parts] == [4, 4, 2]
    assert torch.equal(torch.cat(parts), samples)


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(DeviceUnavailableError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailableError, match="CUDA"):
            resolve_device("cuda")
