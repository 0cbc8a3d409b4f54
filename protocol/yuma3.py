"""Yuma3 bonds: a per-bond EMA, optionally with liquid alpha (subtensor's Yuma3 variant).

Classic Yuma (:mod:`protocol.emission`) column-normalizes last epoch's bonds and moves them
towards this epoch's stake-weighted bond weights. Yuma3, which a subnet switches on with
``yuma3_enabled``, keeps every bond as an absolute proportion in [0, 1] instead: bond
``b_ij`` moves towards validator i's own bond weight ``w_ij`` by a rate ``a_ij``. With
``liquid_alpha_enabled`` that rate is per bond, between ``alpha_low`` and ``alpha_high``,
high where the validator's weight runs ahead of consensus ("buying" early) or its bond
exceeds its current weight ("selling"), through a sigmoid of the gap; otherwise it is the
subnet's fixed ``1 - bonds_moving_avg / 1e6``.

Shapes: n uids; weights, bonds and alphas are (n, n) float64 with row i = validator i;
consensus is (n,). Pure functions; :func:`protocol.emission.yuma_epoch` calls them.

Example:
    >>> import torch
    >>> w = torch.tensor([[0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    >>> b = torch.zeros(2, 2, dtype=torch.float64)
    >>> ema_bonds(w, w > 0, b, torch.tensor([0.0, 1.0]), 0.1, None)[0, 1].item()
    0.1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

F64 = torch.float64
# subtensor bounds the exponent of its sigmoid to [-20, 20] before taking exp
EXP_BOUND = 20.0


@dataclass(frozen=True)
class LiquidAlpha:
    """The liquid-alpha range and sigmoid steepness (steepness as stored on chain, an i16)."""

    low: float
    high: float
    steepness: float


def liquid_alphas(consensus: Tensor, weights: Tensor, bonds: Tensor, liquid: LiquidAlpha) -> Tensor:
    """Per-bond EMA rates in [low, high]; (n, n).

    The gap is ``w - c`` (clamped to [0, 1]) where the weight is at least the bond, else
    ``b - w``; the rate is ``low + (high - low) * sigmoid(steepness / 100 * (gap - 0.5))``.
    """
    c = consensus.to(F64)[None, :]
    buy = torch.clamp(weights - c, 0.0, 1.0)
    sell = torch.clamp(bonds - weights, 0.0, 1.0)
    gap = torch.where(weights >= bonds, buy, sell)
    exponent = torch.clamp(-(liquid.steepness / 100.0) * (gap - 0.5), -EXP_BOUND, EXP_BOUND)
    sigmoid = 1.0 / (1.0 + torch.exp(exponent))
    alpha = liquid.low + sigmoid * (liquid.high - liquid.low)
    return torch.clamp(torch.clamp(alpha, max=liquid.high), min=liquid.low)


def ema_bonds(weights: Tensor, present: Tensor, bonds: Tensor, consensus: Tensor, alpha: float,
              liquid: LiquidAlpha | None) -> Tensor:
    """This epoch's Yuma3 bonds from the bond weights ``weights`` and last epoch's ``bonds``.

    With liquid alpha (and some consensus above 0) each bond moves at its own rate, capped at
    1, and — as in the chain's sparse epoch — only bonds where the validator still holds a
    weight entry (``present``, (n, n) bool) survive; without it every bond moves at the
    fixed ``alpha`` and a bond without a weight decays.
    """
    if liquid is not None and bool((consensus != 0).any()):
        rates = liquid_alphas(consensus, weights, bonds, liquid)
        moved = (1.0 - rates) * bonds + torch.clamp(rates * weights, min=0.0)
        return torch.where(present, torch.clamp(moved, max=1.0), torch.zeros_like(moved))
    return alpha * weights + (1.0 - alpha) * bonds
