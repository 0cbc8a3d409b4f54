"""The miner's inner loop: H AdamW steps from θ_w on the assigned samples.

The local model lives on the chosen device (cuda, mps or cpu); everything that
leaves the trainer — the pseudo-gradient Δ = θ_w − θ_local — is CPU fp32, so the
outer state (θ_w, error feedback, codec) never depends on the device.

Example:
    >>> trainer = InnerTrainer(preset("tiny"), lr=3e-3, device="cpu")
    >>> result = trainer.train(theta_w, batches)          # batches: list of (B, T+1)
    >>> result.delta["tok_embeddings.weight"].shape       # same shapes as θ_w
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from node.devices import DeviceUnavailableError, resolve_device  # noqa: F401 (re-exported)
from protocol.model import ModelConfig, build_model, lm_loss

# (step index from 1, total steps, loss) -> None; used for progress display.
StepCallback = Callable[[int, int, float], None]


def split_batches(samples: Tensor, batch_size: int) -> list[Tensor]:
    """Cut (N, T+1) samples into consecutive (batch_size, T+1) batches (last may be short)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    return [samples[i : i + batch_size] for i in range(0, samples.shape[0], batch_size)]


@dataclass
class TrainResult:
    """What one window of inner steps produced (all tensors CPU fp32)."""

    delta: dict[str, Tensor]  # θ_w − θ_local, per parameter name
    losses: list[float]  # one per inner step, before that step's update
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def first_loss(self) -> float:
        return self.losses[0] if self.losses else float("nan")

    @property
    def last_loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")


class InnerTrainer:
    """Runs the inner AdamW steps on a local copy of the network's model.

    The AdamW state persists across windows (as in DiLoCo); the parameters are
    reset to θ_w at the start of every window.

    Example:
        >>> t = InnerTrainer(preset("tiny"), lr=3e-3, device="cpu")
        >>> r = t.train(theta_w, batches); r.last_loss < r.first_loss
    """

    def __init__(
        self,
        model_cfg: ModelConfig,
        *,
        lr: float,
        weight_decay: float = 0.0,
        device: str | torch.device = "cpu",
        grad_clip: float = 1.0,
    ) -> None:
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.model = build_model(model_cfg).to(self.device)
        self.grad_clip = grad_clip
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95)
        )

    def load_base(self, base: Mapping[str, Tensor]) -> None:
        """Set the local parameters to θ_w (a CPU state dict)."""
        with torch.no_grad():
            for name, param in self.model.named_parameters():
                param.copy_(base[name].to(self.device, dtype=param.dtype))

    def step(self, batch: Tensor) -> float:
        """One AdamW step on a (B, T+1) batch; returns the loss before the step."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = lm_loss(self.model, batch.to(self.device))
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        return float(loss.detach())

    def delta_from(self, base: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Δ = θ_w − θ_local on CPU fp32 (the direction a descent step took, negated)."""
        out: dict[str, Tensor] = {}
        for name, param in self.model.named_parameters():
            local = param.detach().to("cpu", dtype=torch.float32)
            out[name] = base[name].to(torch.float32) - local
        return out

    def train(
        self,
        base: Mapping[str, Tensor],
        batches: Sequence[Tensor],
        on_step: StepCallback | None = None,
    ) -> TrainResult:
        """H = len(batches) inner steps from θ_w; returns Δ and the per-step losses."""
        started = time.monotonic()
        self.load_base(base)
        losses: list[float] = []
        for i, batch in enumerate(batches, start=1):
            losses.append(self.step(batch))
            if on_step is not None:
                on_step(i, len(batches), losses[-1])
        delta = self.delta_from(base)
        return TrainResult(delta=delta, losses=losses, seconds=time.monotonic() - started)

    def optimizer_state(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)
