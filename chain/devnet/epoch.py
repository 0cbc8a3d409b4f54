"""The per-tempo epoch: Yuma consensus from :mod:`protocol.emission` over the stored state.

Schedule (as subtensor): subnet ``netuid`` runs its epoch at every block where
``(block + netuid + 1) % (tempo + 1) == 0``. The epoch pays the alpha minted since the
previous epoch (``emission_tao_per_block`` per block) as stake: each uid's emission is
credited to its hotkey, owned by its coldkey. Scores are stored as u16 (65535 = 1.0).

Example:
    >>> epoch_due(netuid=1, tempo=10, block=9)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from chain.devnet.params import U16_MAX, DevnetConfig
from chain.devnet.state import ChainState, Neuron, Subnet
from protocol.emission import EpochInputs, EpochResult, YumaParams, yuma_epoch

F64 = torch.float64


@dataclass(frozen=True)
class EpochSummary:
    """What one epoch did, for the log line the devnet prints."""

    netuid: int
    block: int
    neurons: int
    emitted_rao: int
    validators: int


def epoch_due(netuid: int, tempo: int, block: int) -> bool:
    """Whether subnet ``netuid`` runs its epoch at ``block``."""
    return tempo > 0 and (block + netuid + 1) % (tempo + 1) == 0


def blocks_until_epoch(netuid: int, tempo: int, block: int) -> int:
    """Blocks from ``block`` to the subnet's next epoch (0 when it runs at ``block``)."""
    return (tempo - (block + netuid + 1) % (tempo + 1) + 1) % (tempo + 1)


def yuma_params(hyperparams: dict) -> YumaParams:
    """The subnet's hyperparameters as :class:`YumaParams` (chain units -> floats)."""
    return YumaParams(
        kappa=max(int(hyperparams["kappa"]), 1) / U16_MAX,
        bond_alpha=1.0 - int(hyperparams["bonds_moving_avg"]) / 1_000_000,
        bond_penalty=int(hyperparams["bonds_penalty"]) / U16_MAX,
        activity_cutoff=int(hyperparams["activity_cutoff"]),
        max_allowed_validators=int(hyperparams["max_validators"]),
    )


def epoch_inputs(state: ChainState, subnet: Subnet, neurons: list[Neuron], block: int,
                 budget_rao: int) -> EpochInputs:
    """Read one subnet's epoch inputs from the state; n = len(neurons), uid = index."""
    n = len(neurons)
    weights = torch.zeros(n, n, dtype=F64)
    for uid, row in state.weights(subnet.netuid).items():
        for dest, value in row:
            if uid < n and dest < n:
                weights[uid, dest] = float(value)
    bonds = torch.zeros(n, n, dtype=F64)
    for uid, row in state.bonds(subnet.netuid).items():
        for dest, value in row:
            if uid < n and dest < n:
                bonds[uid, dest] = value
    set_at = state.weights_set_at(subnet.netuid)
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
    )


def to_u16(x: float) -> int:
    return int(min(max(round(x * U16_MAX), 0), U16_MAX))


def run_epoch(state: ChainState, cfg: DevnetConfig, netuid: int, block: int) -> EpochSummary:
    """Run Yuma for ``netuid`` at ``block`` and store its outputs (inside the caller's txn)."""
    subnet = state.subnet(netuid)
    if subnet is None:
        raise ValueError(f"netuid {netuid} does not exist")
    neurons = state.neurons(netuid)
    budget = cfg.emission_rao_per_block * max(block - subnet.last_epoch_block, 0)
    if not subnet.hyperparams.get("subnet_emission_enabled", True):
        budget = 0
    paid = 0
    if neurons:
        inputs = epoch_inputs(state, subnet, neurons, block, budget)
        result = yuma_epoch(inputs, yuma_params(subnet.hyperparams))
        paid = _store_result(state, netuid, neurons, result, budget)
    subnet.last_epoch_block = block
    subnet.epoch_index += 1
    state.put_subnet(subnet)
    permits = sum(1 for x in state.neurons(netuid) if x.validator_permit)
    return EpochSummary(netuid, block, len(neurons), paid, permits)


def _store_result(state: ChainState, netuid: int, neurons: list[Neuron], result: EpochResult,
                  budget: int) -> int:
    """Write scores, permits and bonds; pay emission as stake. Returns rao paid."""
    paid = 0
    for i, neuron in enumerate(neurons):
        emission = int(round(float(result.emission[i])))
        neuron.rank = to_u16(float(result.ranks[i]))
        neuron.trust = to_u16(float(result.trust[i]))
        neuron.consensus = to_u16(float(result.consensus[i]))
        neuron.incentive = to_u16(float(result.incentive[i]))
        neuron.dividends = to_u16(float(result.dividends[i]))
        neuron.validator_trust = to_u16(float(result.validator_trust[i]))
        neuron.validator_permit = bool(result.validator_permit[i])
        neuron.active = bool(result.active[i])
        neuron.emission = emission
        neuron.pruning_score = to_u16(emission / budget) if budget else 0
        state.put_neuron(neuron)
        if emission > 0:
            state.add_stake(neuron.hotkey, neuron.coldkey, netuid, emission)
            paid += emission
    nz = torch.nonzero(result.bonds > 0, as_tuple=False).tolist()
    state.replace_bonds(netuid, [(i, j, float(result.bonds[i, j])) for i, j in nz])
    return paid
