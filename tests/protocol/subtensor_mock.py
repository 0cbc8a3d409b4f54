"""A subnet as subtensor's epoch unit tests build it, epoch after epoch, over protocol.emission.

Mirrors what those tests do to chain state between epochs: ``set_weights`` stores the
max-upscaled u16 row (zero entries kept) and stamps LastUpdate; a registration over a uid
clears its weight row, zeroes weights to it, drops its bond row and permit; each epoch stores
the new permits and the bonds as u16 (floored, as the chain stores them). Manual epochs in
those tests never set the last-epoch block, so bonds to uids registered at or after
``block - tempo`` are dropped, as subtensor does then.
"""

from __future__ import annotations

import math

import torch

from protocol.emission import EpochInputs, EpochResult, YumaParams, yuma_epoch

F64 = torch.float64
U16_MAX = 65535


def max_upscale_u16(values: list[int]) -> list[int]:
    """A weight row as the chain stores it: the largest becomes 65535 (rounded)."""
    top = max(values, default=0)
    if top == 0:
        return [0 for _ in values]
    return [int(math.floor(v * U16_MAX / top + 0.5)) for v in values]


def u16_floor(x: float) -> int:
    """The chain's proportion-to-u16 conversion (floor), tolerant of float64 rounding."""
    return int(math.floor(x * U16_MAX + 1e-9))


class MockSubnet:
    """n uids with stake; weights, permits and bonds evolve like the chain's storage."""

    def __init__(self, stake: list[float], params: YumaParams, *, tempo: int = 1,
                 block: int = 0) -> None:
        n = len(stake)
        self.params, self.tempo, self.block = params, tempo, block
        self.stake = [float(s) for s in stake]
        self.weights = torch.zeros(n, n, dtype=F64)
        self.entries = torch.zeros(n, n, dtype=torch.bool)
        self.last_update = [block] * n
        self.registered = [block] * n
        self.permit = torch.zeros(n, dtype=torch.bool)
        self.bonds_u16 = torch.zeros(n, n, dtype=F64)
        self.owner_uid: int | None = None

    @property
    def n(self) -> int:
        return len(self.stake)

    def set_weights(self, uid: int, dests: list[int], values: list[int]) -> None:
        self.weights[uid] = 0.0
        self.entries[uid] = False
        index = torch.tensor(dests, dtype=torch.int64)
        self.weights[uid, index] = torch.tensor(max_upscale_u16(values), dtype=F64)
        self.entries[uid, index] = True
        self.last_update[uid] = self.block

    def register(self, uid: int, stake: float = 0.0) -> None:
        """A new hotkey replaces ``uid`` at the current block."""
        self.weights[uid] = 0.0
        self.entries[uid] = False
        self.weights[:, uid] = 0.0  # entries to the uid stay, with weight 0
        self.bonds_u16[uid] = 0.0
        self.permit[uid] = False
        self.stake[uid] = stake
        self.registered[uid] = self.last_update[uid] = self.block

    def next_block(self, blocks: int = 1) -> None:
        self.block += blocks

    def reset_bonds_to(self, uid: int) -> None:
        """subtensor's bonds reset (a commitment with the reset flag) for ``uid``."""
        self.bonds_u16[:, uid] = 0.0

    def inputs(self, budget: float) -> EpochInputs:
        return EpochInputs(
            weights=self.weights.clone(), stake=torch.tensor(self.stake, dtype=F64),
            last_update=torch.tensor(self.last_update), registered_at=torch.tensor(self.registered),
            weights_set_at=torch.tensor(self.last_update), bonds=self.bonds_u16 / U16_MAX,
            current_block=self.block, emission_budget=budget,
            validator_permit=self.permit.clone(), last_epoch_block=self.block - self.tempo - 1,
            owner_uid=self.owner_uid, weight_entries=self.entries.clone(),
        )

    def epoch(self, budget: float = 1e9) -> EpochResult:
        result = yuma_epoch(self.inputs(budget), self.params)
        self.permit = result.validator_permit.clone()
        self.bonds_u16 = torch.floor(result.bonds * U16_MAX + 1e-9)
        return result

    def bond(self, i: int, j: int) -> int:
        return int(self.bonds_u16[i, j])
