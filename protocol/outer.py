"""Aggregation of miners' pseudo-gradients and the outer step every node applies.

A pseudo-gradient is Δ = θ_start − θ_end (what a miner's inner steps moved). The lead
validator clips each contributor's Δ to the median norm and averages them; every node then
applies the result with ``OuterOptimizer``. The outer step runs on CPU in fp32 with one
rounding per elementwise op (no fused multiply-add), so CPU and GPU nodes end the window
with bit-identical parameters.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(2, 1, bias=False)
    >>> before = model.weight.detach().clone()
    >>> delta = aggregate([{"weight": torch.ones(1, 2)}, {"weight": -torch.ones(1, 2)}])
    >>> OuterOptimizer(lr=1.0).apply(model, delta)
    >>> bool(torch.equal(model.weight.detach(), before))   # the two updates cancel
    True
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

Update = dict[str, Tensor]


def _cpu32(t: Tensor) -> Tensor:
    return t.detach().to(device="cpu", dtype=torch.float32)


def update_norm(update: Mapping[str, Tensor]) -> float:
    """Global L2 norm over all tensors of an update (float64 sum, names in sorted order)."""
    total = 0.0
    for name in sorted(update):
        total += float(update[name].detach().to(device="cpu", dtype=torch.float64).square().sum())
    return math.sqrt(total)


def clip_to_median_norm(updates: Sequence[Mapping[str, Tensor]]) -> list[Update]:
    """Scale each update whose norm exceeds the median norm down to the median.

    Returns new fp32 CPU dicts; inputs are not modified. One oversized (or malicious)
    contributor can then move the model no further than a typical one.
    """
    if not updates:
        return []
    norms = [update_norm(u) for u in updates]
    median = statistics.median(norms)
    clipped: list[Update] = []
    for update, norm in zip(updates, norms, strict=True):
        scale = median / norm if norm > median else 1.0
        clipped.append({k: _cpu32(v) * scale if scale != 1.0 else _cpu32(v).clone()
                        for k, v in update.items()})
    return clipped


def _check_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0] * count
    values = [float(w) for w in weights]
    if len(values) != count:
        raise ValueError(f"got {len(values)} weights for {count} updates")
    if any(not math.isfinite(w) or w < 0 for w in values) or sum(values) <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    return values


def _shapes(updates: Sequence[Mapping[str, Tensor]]) -> dict[str, torch.Size]:
    """Union of names -> shape; a name with two different shapes is an error."""
    shapes: dict[str, torch.Size] = {}
    for update in updates:
        for name, tensor in update.items():
            if shapes.setdefault(name, tensor.shape) != tensor.shape:
                raise ValueError(f"{name}: shapes {tuple(shapes[name])} and {tuple(tensor.shape)} differ")
    return shapes


def aggregate(
    updates: Sequence[Mapping[str, Tensor]], weights: Sequence[float] | None = None,
    *, per_position: bool = False,
) -> Update:
    """Clip to the median norm, then the (weighted) mean; names absent from an update count
    as zeros there. Empty input gives ``{}``. Output: fp32 CPU tensors, names sorted.

    ``per_position``: divide each position by the weight of the updates that are non-zero
    there instead of by the total. Sparse (top-k) updates from different miners rarely share
    positions, so the plain mean shrinks most entries by 1/G; this keeps each sent entry at
    the scale its senders gave it (positions nobody sent stay 0).
    """
    if not updates:
        return {}
    coefs = _check_weights(weights, len(updates))
    shapes = _shapes(updates)
    total = sum(coefs)
    clipped = clip_to_median_norm(updates)
    out: Update = {}
    for name in sorted(shapes):
        acc = torch.zeros(shapes[name], dtype=torch.float32)
        mass = torch.zeros(shapes[name], dtype=torch.float32)  # weight of senders per position
        for update, coef in zip(clipped, coefs, strict=True):
            if name in update and coef > 0:
                acc = acc + update[name] * (coef / total)  # fixed order: contributor order
                mass = mass + (update[name] != 0).to(torch.float32) * (coef / total)
        out[name] = acc / mass.clamp(min=torch.finfo(torch.float32).tiny) if per_position else acc
    return out


class OuterOptimizer:
    """SGD with optional (Nesterov) momentum over pseudo-gradients; state on CPU in fp32.

    θ ← θ − lr·g (plain), with momentum m: buf ← m·buf + g, then g' = buf or g + m·buf
    (Nesterov). lr=1, momentum=0 makes θ_{w+1} the mean of the miners' models.

    Example:
        >>> opt = OuterOptimizer(lr=0.7, momentum=0.9, nesterov=True)
        >>> opt.state_dict()["momentum"]
        0.9
    """

    def __init__(self, lr: float = 1.0, momentum: float = 0.0, nesterov: bool = False) -> None:
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0.0:
            raise ValueError("nesterov needs momentum > 0")
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.buffers: dict[str, Tensor] = {}  # name -> fp32 CPU momentum buffer

    def _validate(self, params: Mapping[str, Tensor], update: Mapping[str, Tensor]) -> None:
        for name, tensor in update.items():
            if name not in params:
                raise ValueError(f"aggregate names unknown parameter {name!r}")
            if tuple(tensor.shape) != tuple(params[name].shape):
                raise ValueError(
                    f"{name}: aggregate shape {tuple(tensor.shape)} != parameter shape "
                    f"{tuple(params[name].shape)}"
                )
            if not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"{name}: aggregate has non-finite values")

    def _direction(self, name: str, grad: Tensor) -> Tensor:
        """The step direction for one tensor, updating its momentum buffer."""
        if self.momentum == 0.0:
            return grad
        buf = self.buffers.get(name)
        buf = grad.clone() if buf is None else buf * self.momentum + grad
        self.buffers[name] = buf
        return grad + buf * self.momentum if self.nesterov else buf

    @torch.no_grad()
    def apply(self, model: nn.Module, aggregate: Mapping[str, Tensor]) -> None:
        """θ ← θ − lr·direction for every parameter; a name missing from ``aggregate`` has
        a zero pseudo-gradient (momentum still moves it). Validates everything first."""
        params = dict(model.named_parameters())
        self._validate(params, aggregate)
        for name in sorted(params):
            param = params[name]
            grad = _cpu32(aggregate[name]) if name in aggregate else None
            if grad is None and name not in self.buffers:
                continue  # nothing moves this tensor
            if grad is None:
                grad = torch.zeros(param.shape, dtype=torch.float32)
            step = self._direction(name, grad)
            if self.lr != 1.0:
                step = step * self.lr  # separate op: one rounding, no fused multiply-add
            new = _cpu32(param) - step
            param.copy_(new.to(device=param.device, dtype=param.dtype))

    def state_dict(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "buffers": {k: v.clone() for k, v in sorted(self.buffers.items())},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore hyperparameters and momentum buffers (copied to fp32 CPU)."""
        missing = {"lr", "momentum", "nesterov", "buffers"} - set(state)
        if missing:
            raise ValueError(f"outer optimizer state lacks {sorted(missing)}")
        fresh = OuterOptimizer(state["lr"], state["momentum"], state["nesterov"])
        self.lr, self.momentum, self.nesterov = fresh.lr, fresh.momentum, fresh.nesterov
        self.buffers = {str(k): _cpu32(v).clone() for k, v in state["buffers"].items()}
