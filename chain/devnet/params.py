"""Devnet configuration, genesis defaults and the hyperparameter tables.

Hyperparameters are keyed by the names the SDK's ``get_subnet_hyperparams_v3`` reader
and ``bittensor.hyperparams`` use; :data:`STORAGE_ITEM_PARAM` maps the subtensor
storage item each one lives in (``SubtensorModule.<Item>[netuid]``) back to its name.

Example:
    >>> cfg = DevnetConfig(tempo=10)
    >>> default_hyperparams(cfg)["tempo"], default_hyperparams(cfg)["weights_rate_limit"]
    (10, 5)
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

RAO_PER_TAO = 1_000_000_000
U16_MAX = 65535
SUDO_URI = "//Alice"  # the well-known development key: devnet sudo and subnet-1 owner
GENESIS_NETUID = 1
MIN_STAKE_RAO = 2_000_000  # the chain's minimum stake (0.002 TAO)
EXISTENTIAL_DEPOSIT_RAO = 500
MAX_COMMITMENT_FIELDS = 3
MAX_RAW_BYTES = 128


class DevnetConfig(BaseModel):
    """How one devnet runs; fixed at start, stored nowhere (flags on each start).

    Each field's description is the help of its ``swarmtrain devnet`` flag (``--block-time``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    block_time: float = Field(default=1.0, gt=0.0, le=60.0, description="seconds between blocks (sub-second allowed)")
    tempo: int = Field(default=10, ge=1, le=65535, description="blocks between epochs of new subnets (genesis included)")
    faucet_tao: float = Field(default=1000.0, ge=0.0, description="free balance every account starts with, TAO")
    emission_tao_per_block: float = Field(default=1.0, ge=0.0, description="alpha minted per block, paid out at each epoch")
    burn_tao: float = Field(default=0.1, ge=0.0, description="registration burn of new subnets, TAO")
    max_allowed_uids: int = Field(default=256, ge=2, le=4096, description="uids per new subnet before registration prunes")
    immunity_period: int = Field(default=50, ge=0, description="blocks a new uid cannot be pruned")

    @property
    def faucet_rao(self) -> int:
        return int(round(self.faucet_tao * RAO_PER_TAO))

    @property
    def emission_rao_per_block(self) -> int:
        return int(round(self.emission_tao_per_block * RAO_PER_TAO))


# SDK hyperparameter name -> v3 type tag (how get_subnet_hyperparams_v3 tags each value)
PARAM_TYPES: dict[str, str] = {
    "rho": "u16", "kappa": "u16", "immunity_period": "u16", "min_allowed_weights": "u16",
    "max_weights_limit": "u16", "tempo": "u16", "min_difficulty": "u64",
    "max_difficulty": "u64", "difficulty": "u64", "weights_version": "u64",
    "weights_rate_limit": "u64", "adjustment_interval": "u16", "activity_cutoff": "u16",
    "registration_allowed": "bool", "network_pow_registration_allowed": "bool",
    "target_regs_per_interval": "u16", "min_burn": "u64", "max_burn": "u64", "burn": "u64",
    "bonds_moving_avg": "u64", "max_regs_per_block": "u16", "serving_rate_limit": "u64",
    "max_validators": "u16", "adjustment_alpha": "u64", "commit_reveal_period": "u64",
    "commit_reveal_weights_enabled": "bool", "liquid_alpha_enabled": "bool",
    "bonds_penalty": "u16", "max_allowed_uids": "u16", "owner_immune_neuron_limit": "u16",
    "yuma3_enabled": "bool", "subnet_emission_enabled": "bool", "bonds_reset_enabled": "bool",
    "transfers_enabled": "bool", "collateral_lock_share": "u16", "epoch_consensus": "u16",
    "min_childkey_take": "u16", "owner_cut_enabled": "bool", "weights_min_stake": "u64",
    "alpha_high": "u16", "alpha_low": "u16", "alpha_sigmoid_steepness": "I32F32",
}
# integer range each type tag accepts; I32F32 values are set as i16 (subtensor's setter)
INT_BOUNDS = {"u16": (0, U16_MAX), "u64": (0, 2**64 - 1), "I32F32": (-(2**15), 2**15 - 1)}

# subtensor storage item (SubtensorModule.<Item>[netuid]) -> hyperparameter name
STORAGE_ITEM_PARAM: dict[str, str] = {
    "Rho": "rho", "Kappa": "kappa", "ImmunityPeriod": "immunity_period",
    "MinAllowedWeights": "min_allowed_weights", "MaxWeightsLimit": "max_weights_limit",
    "Tempo": "tempo", "MinDifficulty": "min_difficulty", "MaxDifficulty": "max_difficulty",
    "Difficulty": "difficulty", "WeightsVersionKey": "weights_version",
    "WeightsSetRateLimit": "weights_rate_limit", "AdjustmentInterval": "adjustment_interval",
    "ActivityCutoff": "activity_cutoff", "NetworkRegistrationAllowed": "registration_allowed",
    "NetworkPowRegistrationAllowed": "network_pow_registration_allowed",
    "TargetRegistrationsPerInterval": "target_regs_per_interval", "MinBurn": "min_burn",
    "MaxBurn": "max_burn", "Burn": "burn", "BondsMovingAverage": "bonds_moving_avg",
    "MaxRegistrationsPerBlock": "max_regs_per_block", "ServingRateLimit": "serving_rate_limit",
    "MaxAllowedValidators": "max_validators", "AdjustmentAlpha": "adjustment_alpha",
    "RevealPeriodEpochs": "commit_reveal_period",
    "CommitRevealWeightsEnabled": "commit_reveal_weights_enabled",
    "LiquidAlphaOn": "liquid_alpha_enabled", "BondsPenalty": "bonds_penalty",
    "MaxAllowedUids": "max_allowed_uids", "ImmuneOwnerUidsLimit": "owner_immune_neuron_limit",
    "Yuma3On": "yuma3_enabled", "SubnetEmissionEnabled": "subnet_emission_enabled",
    "BondsResetOn": "bonds_reset_enabled", "TransferToggle": "transfers_enabled",
    "CollateralLockShare": "collateral_lock_share",
    "MinChildkeyTakePerSubnet": "min_childkey_take", "OwnerCutEnabled": "owner_cut_enabled",
    "AlphaSigmoidSteepness": "alpha_sigmoid_steepness",
}
# liquid alpha bounds: subtensor's AlphaValues (low, high) and the smallest allowed value
ALPHA_VALUES_MIN = U16_MAX // 40


def default_hyperparams(cfg: DevnetConfig) -> dict[str, Any]:
    """A new subnet's hyperparameters: the chain's defaults, scaled down for a local net."""
    burn = int(round(cfg.burn_tao * RAO_PER_TAO))
    return {
        "rho": 10, "kappa": 32767, "immunity_period": cfg.immunity_period,
        "min_allowed_weights": 1, "max_weights_limit": U16_MAX, "tempo": cfg.tempo,
        "min_difficulty": 0, "max_difficulty": 2**64 - 1, "difficulty": 10_000_000,
        "weights_version": 0, "weights_rate_limit": max(1, cfg.tempo // 2),
        "adjustment_interval": 100, "activity_cutoff": 5000, "registration_allowed": True,
        "network_pow_registration_allowed": False, "target_regs_per_interval": 2,
        "min_burn": burn, "max_burn": burn, "burn": burn, "bonds_moving_avg": 900_000,
        "max_regs_per_block": 16, "serving_rate_limit": 0, "max_validators": 64,
        "adjustment_alpha": 0, "commit_reveal_period": 1,
        "commit_reveal_weights_enabled": False, "liquid_alpha_enabled": False,
        "bonds_penalty": U16_MAX, "max_allowed_uids": cfg.max_allowed_uids,
        "owner_immune_neuron_limit": 0, "yuma3_enabled": False,
        "subnet_emission_enabled": True, "bonds_reset_enabled": False,
        "transfers_enabled": True, "collateral_lock_share": 0, "epoch_consensus": 0,
        "min_childkey_take": 0, "owner_cut_enabled": True, "weights_min_stake": 0,
        "alpha_high": 58982, "alpha_low": 45875, "alpha_sigmoid_steepness": 1000,
    }


def coerce_param(name: str, value: Any) -> Any:
    """Validate an admin-set hyperparameter value against its type tag."""
    kind = PARAM_TYPES.get(name)
    if kind is None:
        raise KeyError(name)
    if kind == "bool":
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
        raise ValueError(f"{name} takes true/false, got {value!r}")
    low, high = INT_BOUNDS[kind]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} takes an integer in {low}..{high}, got {value!r}")
    if name == "tempo" and value == 0:
        raise ValueError("tempo must be >= 1 on the devnet")
    return value
