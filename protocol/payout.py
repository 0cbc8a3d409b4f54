"""How a subnet's alpha emission is cut between its owner, miners and validators (as subtensor).

Per block the chain mints the subnet's alpha emission ``E`` and splits it before any epoch:
the owner's cut ``E * owner_cut`` (18 %: SubnetOwnerCut = 11796 / 65535, when the subnet's
``owner_cut_enabled`` is on), then half of the rest pends for miners and half for
validators (less a root share; a network without root stake, like the devnet, has none).
Each part is floored to whole rao per block and accumulates until the subnet's epoch.

At the epoch (:func:`protocol.emission.yuma_epoch` run over miners + validators) the chain
pays (:func:`pay_epoch`):

- each miner its epoch share ``floor(server_emission)``, except uids whose hotkey the subnet
  owner's coldkey owns: that incentive is burned;
- validators the validator pool in proportion to their epoch shares
  ``floor(validator_emission)``; when no miner earned anything, the pool is the miners'
  and the validators' parts together (so validators are paid by active stake);
- the owner's cut as stake on the subnet owner's hotkey, owned by the owner's coldkey.

Amounts are integer rao; floors are the chain's (fixed point to integer).

Example:
    >>> split_emission(1_000_000_000, blocks=1)
    EmissionSplit(owner=179995422, miners=410002288, validators=410002288)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

U16_MAX = 65535
SUBNET_OWNER_CUT_U16 = 11_796  # mainnet's SubnetOwnerCut (18 %)
OWNER_CUT = SUBNET_OWNER_CUT_U16 / U16_MAX
# float64 rounding may leave an exact chain integer a hair below it; floors allow this much
FLOOR_SLACK = 1e-6


@dataclass(frozen=True)
class EmissionSplit:
    """One epoch's emission in rao: the owner's cut and the miners' and validators' parts."""

    owner: int
    miners: int
    validators: int

    @property
    def epoch_budget(self) -> int:
        """What the epoch distributes: miners' and validators' parts together."""
        return self.miners + self.validators


@dataclass(frozen=True)
class Payout:
    """What one epoch pays per uid (rao) and what it burns."""

    miners: list[int]
    validators: list[int]
    burned: int

    def total(self, uid: int) -> int:
        return self.miners[uid] + self.validators[uid]


def floor_rao(amount: float) -> int:
    """The chain's fixed-point-to-integer floor, tolerant of float64 rounding."""
    return int(math.floor(amount + FLOOR_SLACK)) if amount > 0 else 0


def split_block_emission(rao_per_block: int, owner_cut: float = OWNER_CUT,
                         owner_cut_enabled: bool = True) -> EmissionSplit:
    """One block's split: owner cut, then the rest half to miners, half to validators."""
    if rao_per_block < 0 or not 0.0 <= owner_cut <= 1.0:
        raise ValueError("rao_per_block must be >= 0 and owner_cut in [0, 1]")
    emission = float(rao_per_block)
    cut = emission * owner_cut if owner_cut_enabled else 0.0
    rest = emission - cut
    miners = rest * 0.5
    return EmissionSplit(floor_rao(cut), floor_rao(miners), floor_rao(rest - miners))


def split_emission(rao_per_block: int, blocks: int, owner_cut: float = OWNER_CUT,
                   owner_cut_enabled: bool = True) -> EmissionSplit:
    """The split accumulated over ``blocks`` blocks of constant emission (floored per block)."""
    if blocks < 0:
        raise ValueError(f"blocks must be >= 0, got {blocks}")
    one = split_block_emission(rao_per_block, owner_cut, owner_cut_enabled)
    return EmissionSplit(one.owner * blocks, one.miners * blocks, one.validators * blocks)


def pay_epoch(server_emission: Tensor, validator_emission: Tensor, split: EmissionSplit,
              burned_uids: Tensor | None = None) -> Payout:
    """Rao per uid from an epoch run with ``emission_budget = split.epoch_budget``.

    server_emission, validator_emission: (n,) the epoch's shares (EpochResult fields);
    burned_uids: (n,) bool, uids owned by the subnet owner's coldkey (incentive burned).
    """
    incentive = [floor_rao(float(x)) for x in server_emission]
    burned = [False] * len(incentive) if burned_uids is None else burned_uids.tolist()
    pool = split.validators if sum(incentive) > 0 else split.validators + split.miners
    shares = [floor_rao(float(x)) for x in validator_emission]
    total = sum(shares)
    validators = [floor_rao(pool * s / total) if total else 0 for s in shares]
    miners = [0 if b else x for x, b in zip(incentive, burned, strict=True)]
    return Payout(miners, validators, sum(x for x, b in zip(incentive, burned, strict=True) if b))


def owner_uids(coldkeys: list[str], hotkeys: list[str], owner_coldkey: str,
               owner_hotkey: str) -> Tensor:
    """(n,) bool: uids whose miner incentive the chain burns (the owner's hotkeys)."""
    return torch.tensor([c == owner_coldkey or h == owner_hotkey
                         for c, h in zip(coldkeys, hotkeys, strict=True)], dtype=torch.bool)
