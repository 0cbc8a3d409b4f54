"""Yuma consensus as subtensor runs it: weights and stake in; incentive, dividends, bonds out.

A float64 re-statement of subtensor's epoch (the sparse epoch the chain runs; the chain
computes in I32F32 fixed point, so figures differ in the last digits). Pure: tensors in,
tensors out. The devnet runs it at every tempo (:mod:`chain.devnet.epoch`) and the tests
replay subtensor's own epoch tests through it. One epoch, n uids, row i = validator i:

1. active: ``last_update + activity_cutoff >= block``; stake below ``stake_threshold`` counts
   as 0 (the subnet owner's uid is exempt), then stake is normalized.
2. Permits: this epoch masks with the permits the previous epoch stored
   (``validator_permit``); it stores new ones for the next epoch: the top
   ``max_allowed_validators`` uids by stake, a tie at the cut going to the higher uid, never
   a uid without stake. The owner's uid always holds one.
3. Weights: drop rows without a permit, self-weights (not the owner's), and weight ``w_ij``
   when row i was last set in or before the block uid j registered; row-normalize.
4. Consensus ``C_j``: stake-weighted median (kappa) of column j over active permitted stake;
   clipped weights ``min(w_ij, C_j)``; incentive = normalized clipped-weight stake.
5. Bonds: weights for bonds ``W_b = W + bond_penalty * (clipped - W)``; bonds to a uid that
   registered after the previous epoch are dropped (the whole column). Classic Yuma:
   ``B = colnorm(alpha * colnorm(W_b * S) + (1 - alpha) * colnorm(B_prev))``,
   ``D = normalize(B I)``, stored column max-upscaled. Yuma3 (:mod:`protocol.yuma3`): a
   per-bond EMA (liquid alpha optional), ``D = normalize((colnorm(B) I) * S)``, stored as is.
   Rows are stored for uids holding a new permit, cleared for uids that lost theirs.
6. Emission of ``emission_budget``: miners ``I / (sum I + sum D)``, validators
   ``D / (sum I + sum D)``; when nobody earns (the sum is 0) validators get it all in
   proportion to active stake (to stake when no stake is active).

How a subnet's emission is cut between owner, miners and validators before and after the
epoch is :mod:`protocol.payout`.

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

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from protocol.yuma3 import LiquidAlpha, ema_bonds

F64 = torch.float64
U16_MAX = 65535
ALPHA_LOW = 45875 / U16_MAX  # subtensor's default liquid-alpha range, 0.7 ..
ALPHA_HIGH = 58982 / U16_MAX  # .. 0.9
ALPHA_SIGMOID_STEEPNESS = 1000.0


@dataclass(frozen=True)
class YumaParams:
    """Subnet hyperparameters of the epoch (chain units already converted to floats).

    kappa: share of active stake that must give a miner at least a weight for it to count
        as consensus (0.5 = stake-weighted median).
    bond_alpha: EMA rate of bonds, ``1 - bonds_moving_avg / 1e6``.
    bond_penalty: beta in W_b = W + beta * (clipped W - W); 1 bonds only the clipped weight.
    activity_cutoff: a uid whose last update is older than this many blocks is inactive.
    max_allowed_validators: how many top-stake uids get a validator permit.
    stake_threshold: stake (same units as ``EpochInputs.stake``) below which a uid's stake
        counts as 0 (the chain's weights-min-stake).
    yuma3: per-bond EMA (Yuma3) instead of classic bonds.
    liquid_alpha: per-bond EMA rates in [alpha_low, alpha_high] (Yuma3 only).
    alpha_sigmoid_steepness: steepness of the liquid-alpha sigmoid, as stored on chain.
    """

    kappa: float = 0.5
    bond_alpha: float = 0.1
    bond_penalty: float = 1.0
    activity_cutoff: int = 5000
    max_allowed_validators: int = 64
    stake_threshold: float = 0.0
    yuma3: bool = False
    liquid_alpha: bool = False
    alpha_low: float = ALPHA_LOW
    alpha_high: float = ALPHA_HIGH
    alpha_sigmoid_steepness: float = ALPHA_SIGMOID_STEEPNESS

    def __post_init__(self) -> None:
        if not 0.0 < self.kappa <= 1.0:
            raise ValueError(f"kappa must be in (0, 1], got {self.kappa}")
        for name in ("bond_alpha", "bond_penalty", "alpha_low", "alpha_high"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.alpha_low > self.alpha_high:
            raise ValueError(f"alpha_low {self.alpha_low} exceeds alpha_high {self.alpha_high}")
        if self.activity_cutoff < 0 or self.max_allowed_validators < 0:
            raise ValueError("activity_cutoff and max_allowed_validators must be >= 0")
        if not (0.0 <= self.stake_threshold < math.inf):
            raise ValueError(f"stake_threshold must be finite and >= 0, got {self.stake_threshold}")
        if not math.isfinite(self.alpha_sigmoid_steepness):
            raise ValueError("alpha_sigmoid_steepness must be finite")

    def liquid(self) -> LiquidAlpha | None:
        """The liquid-alpha settings when liquid alpha is on, else None."""
        if not self.liquid_alpha:
            return None
        return LiquidAlpha(self.alpha_low, self.alpha_high, self.alpha_sigmoid_steepness)


@dataclass(frozen=True)
class EpochInputs:
    """One subnet's state at an epoch; n = number of uids, row i = validator i.

    weights: (n, n) raw non-negative weights (u16 or float; rows need not be normalized).
    stake: (n,) stake per uid. last_update: (n,) block of each uid's last activity.
    registered_at: (n,) block each uid was (re-)registered.
    weights_set_at: (n,) block row i of ``weights`` was last set (the chain's LastUpdate).
    bonds: (n, n) bonds the previous epoch stored (zeros at first); classic Yuma reads any
        scale (it column-normalizes), Yuma3 reads proportions in [0, 1] (u16 / 65535).
    validator_permit: (n,) bool, the permits the previous epoch stored; None = this
        epoch's own (for callers without history).
    last_epoch_block: block of the previous epoch; bonds to uids registered after it are
        dropped. None = ``current_block - 1``.
    owner_uid: the uid of the subnet owner's hotkey, if registered (always a permit, keeps
        its self-weight, exempt from the stake threshold).
    weight_entries: (n, n) bool, where a weight row holds an entry (even a zero one); None =
        where ``weights > 0``. Only liquid-alpha Yuma3 tells a zero entry from none.
    """

    weights: Tensor
    stake: Tensor
    last_update: Tensor
    registered_at: Tensor
    weights_set_at: Tensor
    bonds: Tensor
    current_block: int
    emission_budget: float
    validator_permit: Tensor | None = None
    last_epoch_block: int | None = None
    owner_uid: int | None = None
    weight_entries: Tensor | None = None


@dataclass(frozen=True)
class EpochResult:
    """Per-uid outputs, (n,) float64 except the bool masks and (n, n) bonds.

    validator_permit: the new permits (the chain stores them for the next epoch).
    bonds: the bonds to store (classic: column max-upscaled; Yuma3: proportions).
    server_emission / validator_emission: the epoch's miner and validator shares of
    ``emission_budget``; emission: their sum per uid (the chain's Emission).
    """

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
    server_emission: Tensor
    validator_emission: Tensor


@dataclass(frozen=True)
class _Masks:
    """The epoch's masks: old permits (used now), new permits, and counted weight entries."""

    old_permit: Tensor
    new_permit: Tensor
    entries: Tensor


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


def validator_permits(stake: Tensor, max_allowed: int) -> Tensor:
    """Top-``max_allowed`` uids by stake; zero stake never qualifies.

    Among equal stakes the higher uid ranks first (subtensor drops the lowest entries of a
    stable ascending sort), so a tie at the cut keeps the higher uid.
    """
    n = stake.shape[0]
    permit = stake > 0
    if n > max_allowed:
        ascending = torch.argsort(stake.to(F64), stable=True)
        permit[ascending[: n - max_allowed]] = False
    return permit


def _check_finite_non_negative(name: str, tensor: Tensor) -> None:
    values = tensor.to(F64)
    if not bool(torch.isfinite(values).all()) or bool((values < 0).any()):
        raise ValueError(f"{name} must be finite and non-negative")


def _check_shape(name: str, tensor: Tensor | None, shape: tuple[int, ...]) -> None:
    if tensor is not None and tuple(tensor.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")


def _validate(inputs: EpochInputs) -> int:
    """n, after checking shapes and values; bad input raises ValueError naming the field."""
    if inputs.stake.dim() != 1:
        raise ValueError(f"stake must be 1-D (n,), got shape {tuple(inputs.stake.shape)}")
    n = inputs.stake.shape[0]
    for name in ("last_update", "registered_at", "weights_set_at", "validator_permit"):
        _check_shape(name, getattr(inputs, name), (n,))
    for name in ("weights", "bonds", "weight_entries"):
        _check_shape(name, getattr(inputs, name), (n, n))
    for name in ("weights", "bonds", "stake"):
        _check_finite_non_negative(name, getattr(inputs, name))
    budget = float(inputs.emission_budget)
    if not (0.0 <= budget < math.inf):
        raise ValueError(f"emission_budget must be finite and >= 0, got {budget}")
    if inputs.owner_uid is not None and not 0 <= inputs.owner_uid < n:
        raise ValueError(f"owner_uid must be a uid in 0..{n - 1}, got {inputs.owner_uid}")
    return n


def _with_owner(mask: Tensor, owner_uid: int | None) -> Tensor:
    """A copy of the (n,) bool ``mask`` with the owner's uid set."""
    mask = mask.clone()
    if owner_uid is not None:
        mask[owner_uid] = True
    return mask


def filtered_stake(stake: Tensor, threshold: float, owner_uid: int | None = None) -> Tensor:
    """Normalized stake where uids below ``threshold`` count 0 (the owner's uid is exempt)."""
    stake = stake.to(F64)
    keep = _with_owner(torch.floor(stake) >= threshold, owner_uid)
    return normalize(torch.where(keep, stake, torch.zeros_like(stake)))


def _outdated(inputs: EpochInputs) -> Tensor:
    """(n, n) True where row i was last set in or before the block uid j registered."""
    set_at = inputs.weights_set_at.to(torch.int64)
    return set_at[:, None] <= inputs.registered_at.to(torch.int64)[None, :]


def _masks(inputs: EpochInputs, stake: Tensor, params: YumaParams) -> _Masks:
    """Old and new permits (n,), and the (n, n) weight entries that count this epoch."""
    new_permit = _with_owner(validator_permits(stake, params.max_allowed_validators),
                             inputs.owner_uid)
    stored = new_permit if inputs.validator_permit is None else inputs.validator_permit
    old_permit = _with_owner(stored.to(torch.bool), inputs.owner_uid)
    entries = inputs.weight_entries
    entries = inputs.weights.to(F64) > 0 if entries is None else entries.to(torch.bool)
    entries = entries & old_permit[:, None] & ~_outdated(inputs)
    diagonal = torch.eye(entries.shape[0], dtype=torch.bool)
    if inputs.owner_uid is not None:
        diagonal[inputs.owner_uid, inputs.owner_uid] = False  # the owner may weight itself
    return _Masks(old_permit, new_permit, entries & ~diagonal)


def _bond_entries(masks: _Masks, weights: Tensor, consensus: Tensor, bond_weights: Tensor,
                  penalty: float) -> Tensor:
    """Where a sparse row of bond weights holds an entry (liquid-alpha Yuma3 keeps only these).

    Penalty 0 keeps the weight entries; penalty 1 keeps clipped entries, losing those clipped
    by a zero consensus; in between only positive bond weights remain.
    """
    if penalty == 0.0:
        return masks.entries
    if penalty == 1.0:
        return masks.entries & ~((weights > consensus[None, :]) & (consensus[None, :] <= 0))
    return bond_weights > 0


def _reset_columns(inputs: EpochInputs) -> Tensor:
    """Last epoch's bonds, without the columns of uids registered since that epoch."""
    last = inputs.current_block - 1 if inputs.last_epoch_block is None else inputs.last_epoch_block
    fresh = inputs.registered_at.to(torch.int64) > last
    bonds = inputs.bonds.to(F64).clone()
    bonds[:, fresh] = 0.0
    return bonds


def _max_upscale_columns(bonds: Tensor) -> Tensor:
    """Each column divided by its largest entry (how classic bonds are stored)."""
    top = bonds.max(dim=0, keepdim=True).values if bonds.numel() else bonds.sum(0, keepdim=True)
    return torch.where(top > 0, bonds / torch.where(top > 0, top, 1.0), torch.zeros_like(bonds))


def _classic_bonds(bond_weights: Tensor, active_stake: Tensor, prev: Tensor, incentive: Tensor,
                   alpha: float) -> tuple[Tensor, Tensor]:
    """(bonds to store, dividends) of classic Yuma."""
    delta = normalize(bond_weights * active_stake[:, None], dim=0)
    bonds = normalize(alpha * delta + (1.0 - alpha) * normalize(prev, dim=0), dim=0)
    return _max_upscale_columns(bonds), normalize(bonds @ incentive)


def _yuma3_bonds(bond_weights: Tensor, entries: Tensor, prev: Tensor, consensus: Tensor,
                 active_stake: Tensor, incentive: Tensor,
                 params: YumaParams) -> tuple[Tensor, Tensor]:
    """(bonds to store, dividends) of Yuma3."""
    bonds = ema_bonds(bond_weights, entries, prev, consensus, params.bond_alpha, params.liquid())
    per_validator = normalize(bonds, dim=0) @ incentive
    return bonds, normalize(per_validator * active_stake)


def _stored_rows(bonds: Tensor, given: Tensor, masks: _Masks) -> Tensor:
    """Rows kept for new permit holders, cleared for uids that lost theirs, else unchanged."""
    keep_given = ~masks.new_permit & ~masks.old_permit
    rows = torch.where(masks.new_permit[:, None], bonds, torch.zeros_like(bonds))
    return torch.where(keep_given[:, None], given.to(F64), rows)


def _emission_shares(incentive: Tensor, dividends: Tensor, active_stake: Tensor,
                     stake: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(miner, validator, combined) shares of the budget; validators by stake if nobody earns."""
    total = float(incentive.sum() + dividends.sum())
    if total > 0:
        return incentive / total, dividends / total, normalize(incentive + dividends)
    fallback = active_stake if float(active_stake.sum()) > 0 else stake
    return torch.zeros_like(incentive), fallback, fallback


def yuma_epoch(inputs: EpochInputs, params: YumaParams | None = None) -> EpochResult:
    """Run one Yuma consensus epoch (see the module docstring)."""
    params = params or YumaParams()
    _validate(inputs)
    stake = filtered_stake(inputs.stake, params.stake_threshold, inputs.owner_uid)
    active = inputs.last_update.to(torch.int64) + params.activity_cutoff >= inputs.current_block
    masks = _masks(inputs, stake, params)
    active_stake = normalize(torch.where(active & masks.old_permit, stake, torch.zeros_like(stake)))
    weights = normalize(torch.where(masks.entries, inputs.weights.to(F64), 0.0), dim=1)

    consensus = weighted_median_column(weights, active_stake, params.kappa)
    clipped = torch.minimum(weights, consensus[None, :])
    ranks = clipped.T @ active_stake
    preranks = weights.T @ active_stake
    incentive = normalize(ranks)

    bond_weights = weights + params.bond_penalty * (clipped - weights)
    prev = _reset_columns(inputs)
    if params.yuma3:
        entries = _bond_entries(masks, weights, consensus, bond_weights, params.bond_penalty)
        bonds, dividends = _yuma3_bonds(bond_weights, entries, prev, consensus, active_stake,
                                        incentive, params)
    else:
        bonds, dividends = _classic_bonds(bond_weights, active_stake, prev, incentive,
                                          params.bond_alpha)
    budget = float(inputs.emission_budget)
    server, validator, combined = _emission_shares(incentive, dividends, active_stake, stake)
    return EpochResult(
        active=active, validator_permit=masks.new_permit, active_stake=active_stake,
        consensus=consensus, ranks=ranks,
        trust=torch.where(preranks > 0, ranks / torch.where(preranks > 0, preranks, 1.0), 0.0),
        incentive=incentive, validator_trust=clipped.sum(dim=1), dividends=dividends,
        bonds=_stored_rows(bonds, inputs.bonds, masks), emission=budget * combined,
        server_emission=budget * server, validator_emission=budget * validator,
    )
