"""Yuma consensus: validators' weights and stake in, incentive, dividends and emission out.

A float64 re-statement of the chain's epoch (the chain computes in I32F32 fixed point, so
figures differ in the last digits). Pure: tensors in, tensors out; the devnet runs it at
every tempo and tests check it against hand-worked tables.

Example:
    >>> import torch
    >>> inputs = EpochInputs(
    ...     weights=torch.tensor([[0.0, 1.0], [0.0, 0.0]]), stake=torch.tensor([1.0, 0.0]),
    ...     last_update=torch.tensor([10, 10]), registered_at=torch.tensor([0, 0]),
    ...     weights_set_at=torch.tensor([10, 10]), bonds=torch.zeros(2, 2),
    ...     current_block=10, emission_budget=1.0)
    >>> yuma_epoch(inputs).emission.tolist()   # half to the miner, half to its validator
    [0.5, 0.5]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

F64 = torch.float64


@dataclass(frozen=True)
class YumaParams:
    """Subnet hyperparameters of the epoch.

    kappa: share of active stake that must give a miner at least a weight for it to count
        as consensus (0.5 = stake-weighted median).
    bond_alpha: EMA rate of bonds (B = alpha * dB + (1 - alpha) * B_prev).
    bond_penalty: beta in W_b = W + beta * (clipped W - W); 1 bonds only the clipped weight.
    activity_cutoff: a uid whose last update is older than this many blocks is inactive.
    max_allowed_validators: how many top-stake uids get a validator permit.
    """

    kappa: float = 0.5
    bond_alpha: float = 0.1
    bond_penalty: float = 1.0
    activity_cutoff: int = 5000
    max_allowed_validators: int = 64

    def __post_init__(self) -> None:
        if not 0.0 < self.kappa <= 1.0:
            raise ValueError(f"kappa must be in (0, 1], got {self.kappa}")
        if not 0.0 <= self.bond_alpha <= 1.0:
            raise ValueError(f"bond_alpha must be in [0, 1], got {self.bond_alpha}")
        if not 0.0 <= self.bond_penalty <= 1.0:
            raise ValueError(f"bond_penalty must be in [0, 1], got {self.bond_penalty}")
        if self.activity_cutoff < 0 or self.max_allowed_validators < 0:
            raise ValueError("activity_cutoff and max_allowed_validators must be >= 0")


@dataclass(frozen=True)
class EpochInputs:
    """One subnet's state at an epoch; n = number of uids, row i = validator i.

    weights: (n, n) raw non-negative weights (u16 or float; rows need not be normalized).
    stake: (n,) stake per uid. last_update: (n,) block of each uid's last activity.
    registered_at: (n,) block each uid was (re-)registered.
    weights_set_at: (n,) block row i of ``weights`` was last set.
    bonds: (n, n) bonds from the previous epoch (zeros at first).
    """

    weights: Tensor
    stake: Tensor
    last_update: Tensor
    registered_at: Tensor
    weights_set_at: Tensor
    bonds: Tensor
    current_block: int
    emission_budget: float


@dataclass(frozen=True)
class EpochResult:
    """Per-uid outputs of an epoch, all (n,) float64 except the bool masks and (n, n) bonds."""

    active: Tensor
    validator_permit: Tensor
    active_stake: Tensor
    consensus: Tensor
    ranks: Tensor
    trust: Tensor
    incentive: Tensor
    validator_trust: Tensor
    dividends: Tensor
    bonds: Tensor
    emission: Tensor


def normalize(x: Tensor, dim: int | None = None) -> Tensor:
    """Divide by the sum (along ``dim``); all-zero vectors stay zero."""
    total = x.sum() if dim is None else x.sum(dim=dim, keepdim=True)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, x / safe, torch.zeros_like(x))


def weighted_median_column(weights: Tensor, stake: Tensor, kappa: float = 0.5) -> Tensor:
    """Per column j, the largest c such that rows with w_ij >= c hold >= kappa of the stake.

    weights (n, m), stake (n,) -> (m,). Zero total stake gives zeros. With kappa = 0.5 this is
    the stake-weighted (upper) median; kappa = 1 is the smallest weight any staked row gives.
    """
    n, m = weights.shape
    total = float(stake.sum())
    if n == 0 or total <= 0:
        return torch.zeros(m, dtype=F64)
    order = torch.argsort(-weights, dim=0, stable=True)  # (n, m), each column descending
    sorted_w = torch.gather(weights, 0, order)
    cum = torch.cumsum(stake[order], dim=0)  # stake giving >= sorted_w[k, j]
    # the tolerance keeps exact ties (0.5 + 0.5 of stake) from failing on rounding
    reached = cum >= kappa * total - 1e-12 * total
    first = torch.argmax(reached.to(torch.int8), dim=0)  # first row where support reaches kappa
    return sorted_w[first, torch.arange(m)]


def _check_finite_non_negative(name: str, tensor: Tensor) -> None:
    values = tensor.to(F64)
    if not bool(torch.isfinite(values).all()) or bool((values < 0).any()):
        raise ValueError(f"{name} must be finite and non-negative")


def _validate(inputs: EpochInputs) -> int:
    if inputs.stake.dim() != 1:
        raise ValueError(f"stake must be 1-D (n,), got shape {tuple(inputs.stake.shape)}")
    n = inputs.stake.shape[0]
    for name in ("last_update", "registered_at", "weights_set_at"):
        shape = tuple(getattr(inputs, name).shape)
        if shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {shape}")
    for name in ("weights", "bonds"):
        shape = tuple(getattr(inputs, name).shape)
        if shape != (n, n):
            raise ValueError(f"{name} must have shape ({n}, {n}), got {shape}")
    for name in ("weights", "bonds", "stake"):
        _check_finite_non_negative(name, getattr(inputs, name))
    budget = float(inputs.emission_budget)
    if not (0.0 <= budget < float("inf")):
        raise ValueError(f"emission_budget must be finite and >= 0, got {budget}")
    return n


def validator_permits(stake: Tensor, max_allowed: int) -> Tensor:
    """Top-``max_allowed`` uids by stake (ties: lower uid first); zero stake never qualifies."""
    n = stake.shape[0]
    # stable sort on -stake keeps lower uids first among equal stakes
    order = torch.argsort(-stake.to(F64), stable=True)[: min(max_allowed, n)]
    permit = torch.zeros(n, dtype=torch.bool)
    permit[order] = True
    return permit & (stake > 0)


def _outdated_mask(weights_set_at: Tensor, registered_at: Tensor) -> Tensor:
    """(n, n) True where row i was set before uid j registered: the weight meant someone else."""
    return weights_set_at.to(torch.int64)[:, None] < registered_at.to(torch.int64)[None, :]


def _masked_weights(inputs: EpochInputs, permit: Tensor, outdated: Tensor) -> Tensor:
    """Drop rows without permit, self-weights and outdated weights; row-normalize. (n, n)."""
    w = inputs.weights.to(F64).clone()
    w[~permit] = 0.0
    w.fill_diagonal_(0.0)
    w[outdated] = 0.0
    return normalize(w, dim=1)


def _update_bonds(
    weights: Tensor, clipped: Tensor, active_stake: Tensor, prev: Tensor, outdated: Tensor,
    params: YumaParams,
) -> Tensor:
    """B = alpha * colnorm(W_b * S_row) + (1 - alpha) * B_prev, with stale bonds dropped."""
    w_b = weights + params.bond_penalty * (clipped - weights)
    delta = normalize(w_b * active_stake[:, None], dim=0)
    prev = prev.to(F64).clone()
    prev.fill_diagonal_(0.0)
    prev[outdated] = 0.0  # bonds to a uid's previous owner do not carry over
    return params.bond_alpha * delta + (1.0 - params.bond_alpha) * prev


def _emission(incentive: Tensor, dividends: Tensor, budget: float) -> Tensor:
    """E * (I + D) / (sum I + sum D); all zero when nobody earns."""
    total = float(incentive.sum() + dividends.sum())
    if total <= 0:
        return torch.zeros_like(incentive)
    return budget * (incentive + dividends) / total


def yuma_epoch(inputs: EpochInputs, params: YumaParams | None = None) -> EpochResult:
    """Run one Yuma consensus epoch (see the module docstring and docs/architecture.md)."""
    params = params or YumaParams()
    _validate(inputs)
    stake = inputs.stake.to(F64)
    active = inputs.last_update.to(torch.int64) + params.activity_cutoff >= inputs.current_block
    permit = validator_permits(stake, params.max_allowed_validators)
    active_stake = normalize(torch.where(active & permit, stake, torch.zeros_like(stake)))
    outdated = _outdated_mask(inputs.weights_set_at, inputs.registered_at)
    weights = _masked_weights(inputs, permit, outdated)  # (n, n), rows sum to 1 or 0

    consensus = weighted_median_column(weights, active_stake, params.kappa)  # (n,)
    clipped = torch.minimum(weights, consensus[None, :])
    validator_trust = clipped.sum(dim=1)
    ranks = clipped.T @ active_stake
    preranks = weights.T @ active_stake
    trust = torch.where(preranks > 0, ranks / torch.where(preranks > 0, preranks, 1.0), 0.0)
    incentive = normalize(ranks)

    bonds = _update_bonds(weights, clipped, active_stake, inputs.bonds, outdated, params)
    dividends = normalize(bonds @ incentive)  # dividends_i = sum_j B_ij * I_j
    return EpochResult(
        active=active, validator_permit=permit, active_stake=active_stake,
        consensus=consensus, ranks=ranks, trust=trust, incentive=incentive,
        validator_trust=validator_trust, dividends=dividends, bonds=bonds,
        emission=_emission(incentive, dividends, float(inputs.emission_budget)),
    )
