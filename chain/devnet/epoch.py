"""The per-tempo epoch: subtensor's emission split and Yuma consensus over the stored state.

Schedule (as subtensor): subnet ``netuid`` runs its epoch at every block where
``(block + netuid + 1) % (tempo + 1) == 0``, before that block's extrinsics. The epoch
pays the alpha minted since the previous epoch (``emission_tao_per_block`` per block) the
way the chain does (:mod:`protocol.payout`): the owner's cut (18 % when the subnet's
``owner_cut_enabled`` is on) as stake on the subnet owner's hotkey and coldkey; the rest,
half and half, through :func:`protocol.emission.yuma_epoch` to miners (incentive) and
validators (dividends), or all to validators by stake when no miner earns. Incentive of
hotkeys the owner's coldkey owns is burned. Stake is credited to each uid's hotkey, owned
by its coldkey. Scores are stored as floored u16 (65535 = 1.0), bonds as u16 / 65535.

Example:
    >>> epoch_due(netuid=1, tempo=10, block=9)
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from chain.devnet.database import ChainState, Neuron, Subnet
from chain.devnet.params import U16_MAX, DevnetConfig
from protocol.emission import EpochInputs, EpochResult, YumaParams, yuma_epoch
from protocol.payout import EmissionSplit, Payout, owner_uids, pay_epoch, split_emission

F64 = torch.float64


@dataclass(frozen=True)
class EpochSummary:
    """What one epoch did, for the log line the devnet prints."""

    netuid: int
    block: int
    neurons: int
    emitted_rao: int
    validators: int
    owner_rao: int = 0
    burned_rao: int = 0


def epoch_due(netuid: int, tempo: int, block: int) -> bool:
    """Whether subnet ``netuid`` runs its epoch at ``block``."""
    return tempo > 0 and (block + netuid + 1) % (tempo + 1) == 0


def yuma_params(hyperparams: dict) -> YumaParams:
    """The subnet's hyperparameters as :class:`YumaParams` (chain units -> floats)."""
    return YumaParams(
        kappa=max(int(hyperparams["kappa"]), 1) / U16_MAX,
        bond_alpha=1.0 - int(hyperparams["bonds_moving_avg"]) / 1_000_000,
        bond_penalty=int(hyperparams["bonds_penalty"]) / U16_MAX,
        activity_cutoff=int(hyperparams["activity_cutoff"]),
        max_allowed_validators=int(hyperparams["max_validators"]),
        stake_threshold=float(hyperparams["weights_min_stake"]),
        yuma3=bool(hyperparams["yuma3_enabled"]),
        liquid_alpha=bool(hyperparams["liquid_alpha_enabled"]),
        alpha_low=int(hyperparams["alpha_low"]) / U16_MAX,
        alpha_high=int(hyperparams["alpha_high"]) / U16_MAX,
        alpha_sigmoid_steepness=float(hyperparams["alpha_sigmoid_steepness"]),
    )


def emission_split(cfg: DevnetConfig, subnet: Subnet, block: int) -> EmissionSplit:
    """The alpha pending for the subnet's epoch at ``block``, cut as the chain cuts it."""
    blocks = max(block - subnet.last_epoch_block, 0)
    if not subnet.hyperparams.get("subnet_emission_enabled", True):
        blocks = 0
    return split_emission(cfg.emission_rao_per_block, blocks,
                          owner_cut_enabled=bool(subnet.hyperparams["owner_cut_enabled"]))


def _matrices(state: ChainState, netuid: int, n: int) -> tuple[torch.Tensor, ...]:
    """(weights, weight entries, bonds), each (n, n), from the stored rows."""
    weights = torch.zeros(n, n, dtype=F64)
    entries = torch.zeros(n, n, dtype=torch.bool)
    for uid, row in state.weights(netuid).items():
        for dest, value in row:
            if uid < n and dest < n:
                weights[uid, dest] = float(value)
                entries[uid, dest] = True
    bonds = torch.zeros(n, n, dtype=F64)
    for uid, bond_row in state.bonds(netuid).items():  # (dest, bond) floats, unlike weights' ints
        for dest, bond in bond_row:
            if uid < n and dest < n:
                bonds[uid, dest] = bond
    return weights, entries, bonds


def epoch_inputs(state: ChainState, subnet: Subnet, neurons: list[Neuron], block: int,
                 budget_rao: int) -> EpochInputs:
    """Read one subnet's epoch inputs from the state; n = len(neurons), uid = index."""
    n = len(neurons)
    weights, entries, bonds = _matrices(state, subnet.netuid, n)
    set_at = state.weights_set_at(subnet.netuid)
    owner = [x.uid for x in neurons if x.hotkey == subnet.owner_hotkey]
    # the chain reads "no epoch yet" as tempo blocks ago
    last = subnet.last_epoch_block or block - int(subnet.hyperparams["tempo"]) - 1
    return EpochInputs(
        weights=weights,
        stake=torch.tensor([float(state.stake(x.hotkey, subnet.netuid)) for x in neurons],
                           dtype=F64),
        last_update=torch.tensor([x.last_update for x in neurons], dtype=torch.int64),
        registered_at=torch.tensor([x.registered_at for x in neurons], dtype=torch.int64),
        weights_set_at=torch.tensor([set_at.get(x.uid, 0) for x in neurons], dtype=torch.int64),
        bonds=bonds,
        current_block=block,
        emission_budget=float(budget_rao),
        validator_permit=torch.tensor([x.validator_permit for x in neurons], dtype=torch.bool),
        last_epoch_block=last,
        owner_uid=owner[0] if owner else None,
        weight_entries=entries,
    )


def to_u16(x: float) -> int:
    """A proportion as the chain stores it: floored u16 (float64 rounding tolerated)."""
    return int(min(max(math.floor(x * U16_MAX + 1e-9), 0), U16_MAX))


def run_epoch(state: ChainState, cfg: DevnetConfig, netuid: int, block: int) -> EpochSummary:
    """Run Yuma for ``netuid`` at ``block``, store its outputs and pay (inside the caller's txn)."""
    subnet = state.subnet(netuid)
    if subnet is None:
        raise ValueError(f"netuid {netuid} does not exist")
    neurons = state.neurons(netuid)
    split = emission_split(cfg, subnet, block)
    paid = burned = 0
    if neurons:
        inputs = epoch_inputs(state, subnet, neurons, block, split.epoch_budget)
        result = yuma_epoch(inputs, yuma_params(subnet.hyperparams))
        burn = owner_uids([x.coldkey for x in neurons], [x.hotkey for x in neurons],
                          subnet.owner_coldkey, subnet.owner_hotkey)
        payout = pay_epoch(result.server_emission, result.validator_emission, split, burn)
        paid, burned = _store_result(state, netuid, neurons, result, payout), payout.burned
    if split.owner:
        state.add_stake(subnet.owner_hotkey, subnet.owner_coldkey, netuid, split.owner)
    subnet.last_epoch_block = block
    subnet.epoch_index += 1
    state.put_subnet(subnet)
    permits = sum(1 for x in state.neurons(netuid) if x.validator_permit)
    return EpochSummary(netuid, block, len(neurons), paid + split.owner, permits, split.owner,
                        burned)


def _store_result(state: ChainState, netuid: int, neurons: list[Neuron], result: EpochResult,
                  payout: Payout) -> int:
    """Write scores, permits and bonds; pay miners and validators as stake. Returns rao paid."""
    budget = float(result.emission.sum())
    paid = 0
    for i, neuron in enumerate(neurons):
        neuron.rank = to_u16(float(result.ranks[i]))
        neuron.trust = to_u16(float(result.trust[i]))
        neuron.consensus = to_u16(float(result.consensus[i]))
        neuron.incentive = to_u16(float(result.incentive[i]))
        neuron.dividends = to_u16(float(result.dividends[i]))
        neuron.validator_trust = to_u16(float(result.validator_trust[i]))
        neuron.validator_permit = bool(result.validator_permit[i])
        neuron.active = bool(result.active[i])
        neuron.emission = int(math.floor(float(result.emission[i]) + 1e-6))
        neuron.pruning_score = to_u16(float(result.emission[i]) / budget) if budget else 0
        state.put_neuron(neuron)
        amount = payout.total(i)
        if amount > 0:
            state.add_stake(neuron.hotkey, neuron.coldkey, netuid, amount)
            paid += amount
    bonds = torch.floor(result.bonds * U16_MAX + 1e-9)  # stored as the chain's u16
    nz = torch.nonzero(bonds > 0, as_tuple=False).tolist()
    state.replace_bonds(netuid, [(i, j, float(bonds[i, j]) / U16_MAX) for i, j in nz])
    return paid
