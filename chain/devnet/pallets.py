"""Dispatch of signed calls against :class:`ChainState`, with subtensor's checks and errors.

Each handler either changes state and emits events, or raises :class:`DispatchError`
with the chain's error name; the caller runs it inside a savepoint, so a failed call
changes nothing but the signer's nonce (as on the real chain).

Example:
    >>> ctx = Context(state, cfg, block=5, signer=coldkey)          # doctest: +SKIP
    >>> dispatch(ctx, "SubtensorModule", "burned_register",
    ...          BurnedRegister(netuid=1, hotkey=hotkey))           # doctest: +SKIP
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bittensor._generated.errors import ERRORS

from chain.devnet import calls as c
from chain.devnet.calls import ALPHA_VALUES
from chain.devnet.database import ChainState, Neuron, Subnet
from chain.devnet.params import (
    ALPHA_VALUES_MIN,
    MIN_STAKE_RAO,
    RAO_PER_TAO,
    U16_MAX,
    DevnetConfig,
    coerce_param,
    default_hyperparams,
)

_DOCS = {info.name: info.docs for info in ERRORS.values() if info.docs}
NETWORK_LOCK_RAO = 10 * RAO_PER_TAO


class DispatchError(Exception):
    """A call that failed on chain: ``name`` is subtensor's error name."""

    def __init__(self, name: str, detail: str = ""):
        self.name = name
        self.message = detail or _DOCS.get(name, name)
        super().__init__(f"{name}: {self.message}")


@dataclass
class Context:
    """What a call runs against: the state, the block being built and its signer."""

    state: ChainState
    cfg: DevnetConfig
    block: int
    signer: str
    sudo: str = c.ALICE
    extrinsic_idx: int | None = None
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def emit(self, module: str, event: str, **attributes: Any) -> None:
        self.events.append((module, event, attributes))


# Accounts ---------------------------------------------------------------------


def balance(state: ChainState, cfg: DevnetConfig, address: str) -> tuple[int, int]:
    """(free, nonce); an account never seen holds the faucet amount."""
    found = state.account(address)
    return found if found is not None else (cfg.faucet_rao, 0)


def debit(ctx: Context, address: str, amount: int, error: str) -> None:
    free, nonce = balance(ctx.state, ctx.cfg, address)
    if amount > free:
        raise DispatchError(error, f"{address} holds τ{free / RAO_PER_TAO:.4f}, needs τ{amount / RAO_PER_TAO:.4f}")
    ctx.state.set_account(address, free=free - amount, nonce=nonce)


def credit(ctx: Context, address: str, amount: int) -> None:
    free, nonce = balance(ctx.state, ctx.cfg, address)
    ctx.state.set_account(address, free=free + amount, nonce=nonce)


# Helpers ----------------------------------------------------------------------


def _subnet(ctx: Context, netuid: int, error: str = "SubnetNotExists") -> Subnet:
    subnet = ctx.state.subnet(netuid)
    if subnet is None:
        raise DispatchError(error, f"netuid {netuid} does not exist")
    return subnet


def _registered(ctx: Context, netuid: int, hotkey: str, error: str) -> Neuron:
    neuron = ctx.state.neuron_by_hotkey(netuid, hotkey)
    if neuron is None:
        raise DispatchError(error, f"{hotkey} is not registered on netuid {netuid}")
    return neuron


# Registration -----------------------------------------------------------------


def burned_register(ctx: Context, p: c.BurnedRegister) -> None:
    subnet = _subnet(ctx, p.netuid)
    hp = subnet.hyperparams
    if not hp["registration_allowed"]:
        raise DispatchError("SubNetRegistrationDisabled")
    regs = subnet.regs_this_block if subnet.regs_block == ctx.block else 0
    if regs >= hp["max_regs_per_block"]:
        raise DispatchError("TooManyRegistrationsThisBlock")
    if ctx.state.neuron_by_hotkey(p.netuid, p.hotkey) is not None:
        raise DispatchError("HotKeyAlreadyRegisteredInSubNet")
    owner = ctx.state.owner(p.hotkey)
    if owner is not None and owner != ctx.signer:
        raise DispatchError("NonAssociatedColdKey", f"{p.hotkey} belongs to {owner}")
    uid = _free_uid(ctx, subnet)
    debit(ctx, ctx.signer, int(hp["burn"]), "NotEnoughBalanceToStake")
    ctx.state.set_owner(p.hotkey, ctx.signer)
    _install_neuron(ctx, p.netuid, uid, p.hotkey)
    subnet.regs_block, subnet.regs_this_block = ctx.block, regs + 1
    ctx.state.put_subnet(subnet)
    ctx.emit("SubtensorModule", "NeuronRegistered", netuid=p.netuid, uid=uid, hotkey=p.hotkey)


def _free_uid(ctx: Context, subnet: Subnet) -> int:
    """The next uid, or on a full subnet the uid to prune (lowest emission, not immune)."""
    count = ctx.state.neuron_count(subnet.netuid)
    if count < int(subnet.hyperparams["max_allowed_uids"]):
        return count
    immunity = int(subnet.hyperparams["immunity_period"])
    candidates = [
        n for n in ctx.state.neurons(subnet.netuid) if ctx.block - n.registered_at >= immunity
    ]
    if not candidates:
        raise DispatchError("NoNeuronIdAvailable", "the subnet is full and every uid is immune")
    # lowest pruning score (emission), then the older registration, then the lower uid
    victim = min(candidates, key=lambda n: (n.emission, n.registered_at, n.uid))
    return victim.uid


def _install_neuron(ctx: Context, netuid: int, uid: int, hotkey: str) -> None:
    """Register ``hotkey`` at ``uid``; over an old neuron, clear it as subtensor does: its
    weight row and bond row go, weights to it become 0; bonds of others to it stay until the
    next epoch drops that column (the uid registered after that epoch's predecessor)."""
    old = ctx.state.neuron(netuid, uid)
    if old is not None:
        ctx.state.clear_weights(netuid, uid)
        ctx.state.zero_weights_to(netuid, uid)
        ctx.state.clear_bond_row(netuid, uid)
        ctx.emit("SubtensorModule", "NeuronDeregistered", netuid=netuid, uid=uid,
                 hotkey=old.hotkey)
    ctx.state.put_neuron(Neuron(
        netuid=netuid, uid=uid, hotkey=hotkey, coldkey=ctx.state.owner(hotkey) or ctx.signer,
        registered_at=ctx.block, last_update=ctx.block,
    ))


def register_network(ctx: Context, p: c.RegisterNetwork) -> None:
    owner = ctx.state.owner(p.hotkey)
    if owner is not None and owner != ctx.signer:
        raise DispatchError("NonAssociatedColdKey", f"{p.hotkey} belongs to {owner}")
    debit(ctx, ctx.signer, NETWORK_LOCK_RAO, "NotEnoughBalanceToStake")
    netuid = max(ctx.state.netuids(), default=0) + 1
    create_subnet(ctx.state, ctx.cfg, netuid, ctx.signer, p.hotkey, ctx.block)
    ctx.emit("SubtensorModule", "NetworkAdded", netuid=netuid, mechanism=1)


def create_subnet(state: ChainState, cfg: DevnetConfig, netuid: int, owner_coldkey: str,
                  owner_hotkey: str, block: int) -> Subnet:
    state.set_owner(owner_hotkey, owner_coldkey)
    subnet = Subnet(
        netuid=netuid, owner_coldkey=owner_coldkey, owner_hotkey=owner_hotkey,
        registered_at=block, last_epoch_block=block, epoch_index=0,
        name=f"devnet-{netuid}", symbol=f"D{netuid}", hyperparams=default_hyperparams(cfg),
    )
    state.put_subnet(subnet)
    return subnet


# Serving and commitments --------------------------------------------------------


def serve_axon(ctx: Context, p: c.ServeAxon) -> None:
    _subnet(ctx, p.netuid, "MechanismDoesNotExist")
    neuron = _registered(ctx, p.netuid, ctx.signer, "HotKeyNotRegisteredInSubNet")
    if p.ip_type not in (4, 6):
        raise DispatchError("InvalidIpType")
    if not _valid_ip(p.ip_type, p.ip):
        raise DispatchError("InvalidIpAddress", f"{p.ip} is not a usable IPv{p.ip_type} address")
    limit = int(_subnet(ctx, p.netuid).hyperparams["serving_rate_limit"])
    if neuron.axon and limit and ctx.block - int(neuron.axon["block"]) < limit:
        raise DispatchError("ServingRateLimitExceeded")
    neuron.axon = {
        "block": ctx.block, "version": p.version, "ip": p.ip, "port": p.port,
        "ip_type": p.ip_type, "protocol": p.protocol,
        "placeholder1": p.placeholder1, "placeholder2": p.placeholder2,
    }
    ctx.state.put_neuron(neuron)
    ctx.emit("SubtensorModule", "AxonServed", netuid=p.netuid, hotkey=ctx.signer)


def _valid_ip(ip_type: int, ip: int) -> bool:
    if ip == 0:
        return False
    try:
        (ipaddress.IPv4Address if ip_type == 4 else ipaddress.IPv6Address)(ip)
    except ValueError:
        return False
    return True


def set_commitment(ctx: Context, p: c.SetCommitment) -> None:
    _subnet(ctx, p.netuid)
    _registered(ctx, p.netuid, ctx.signer, "AccountNotAllowedCommit")
    ctx.state.set_commitment(p.netuid, ctx.signer, ctx.block, p.info["fields"])
    ctx.emit("Commitments", "Commitment", netuid=p.netuid, who=ctx.signer)


# Weights ------------------------------------------------------------------------


def set_weights(ctx: Context, p: c.SetWeights) -> None:
    subnet = _subnet(ctx, p.netuid, "MechanismDoesNotExist")
    if p.mecid != 0:
        raise DispatchError("MechanismDoesNotExist", "the devnet runs mechanism 0 only")
    hp = subnet.hyperparams
    if len(p.dests) != len(p.weights):
        raise DispatchError("WeightVecNotEqualSize")
    neuron = _registered(ctx, p.netuid, ctx.signer, "HotKeyNotRegisteredInSubNet")
    if ctx.state.stake(ctx.signer, p.netuid) < int(hp["weights_min_stake"]):
        raise DispatchError("NotEnoughStakeToSetWeights")
    if p.version_key < int(hp["weights_version"]):
        raise DispatchError("IncorrectWeightVersionKey")
    limit = int(hp["weights_rate_limit"])
    if limit and ctx.block - neuron.last_update < limit:
        raise DispatchError(
            "SettingWeightsTooFast",
            f"last set at block {neuron.last_update}; the rate limit is {limit} blocks",
        )
    _check_weights(ctx, subnet, neuron, p.dests, p.weights)
    ctx.state.set_weights(p.netuid, neuron.uid, _max_upscale(p.dests, p.weights), ctx.block)
    neuron.last_update = ctx.block
    ctx.state.put_neuron(neuron)
    ctx.emit("SubtensorModule", "WeightsSet", netuid=p.netuid, uid=neuron.uid)


def _check_weights(ctx: Context, subnet: Subnet, neuron: Neuron, dests: list[int],
                   weights: list[int]) -> None:
    n = ctx.state.neuron_count(subnet.netuid)
    if len(set(dests)) != len(dests):
        raise DispatchError("DuplicateUids")
    if len(dests) > n:
        raise DispatchError("UidsLengthExceedUidsInSubNet")
    if any(d >= n for d in dests):
        raise DispatchError("UidVecContainInvalidOne", f"the subnet has uids 0..{n - 1}")
    if dests == [neuron.uid]:
        return  # a pure self-weight is exempt from the permit and size rules
    hp = subnet.hyperparams
    if not neuron.validator_permit:
        raise DispatchError("NeuronNoValidatorPermit")
    if len(dests) < min(int(hp["min_allowed_weights"]), n):
        raise DispatchError("WeightVecLengthIsLow")
    limit = int(hp["max_weights_limit"])
    total = sum(weights)
    if limit < U16_MAX and total > 0 and max(weights) * U16_MAX > limit * total:
        raise DispatchError("MaxWeightExceeded")


def _max_upscale(dests: list[int], weights: list[int]) -> list[tuple[int, int]]:
    """Stored weights: the largest becomes 65535; zero entries are kept, as on the chain."""
    top = max(weights, default=0)
    scale = U16_MAX / top if top else 0.0
    return sorted((d, int(w * scale + 0.5)) for d, w in zip(dests, weights, strict=True))


# Stake and balances -------------------------------------------------------------


def add_stake(ctx: Context, p: c.AddStake) -> None:
    _subnet(ctx, p.netuid)
    if ctx.state.owner(p.hotkey) is None:
        raise DispatchError("HotKeyAccountNotExists")
    if p.amount_staked < MIN_STAKE_RAO:
        raise DispatchError("AmountTooLow", f"the minimum stake is τ{MIN_STAKE_RAO / RAO_PER_TAO:g}")
    if p.limit_price is not None and p.limit_price < RAO_PER_TAO:
        raise DispatchError("SlippageTooHigh", "the devnet price is 1 TAO per alpha")
    debit(ctx, ctx.signer, p.amount_staked, "NotEnoughBalanceToStake")
    ctx.state.add_stake(p.hotkey, ctx.signer, p.netuid, p.amount_staked)  # 1 TAO = 1 alpha
    ctx.emit("SubtensorModule", "StakeAdded", coldkey=ctx.signer, hotkey=p.hotkey,
             netuid=p.netuid, amount=p.amount_staked)


def remove_stake(ctx: Context, p: c.RemoveStake) -> None:
    _subnet(ctx, p.netuid)
    held = ctx.state.stake(p.hotkey, p.netuid, ctx.signer)
    if p.amount_unstaked == 0 or p.amount_unstaked > held:
        raise DispatchError("NotEnoughStakeToWithdraw", f"τ{held / RAO_PER_TAO:.4f} staked")
    ctx.state.add_stake(p.hotkey, ctx.signer, p.netuid, -p.amount_unstaked)
    credit(ctx, ctx.signer, p.amount_unstaked)
    ctx.emit("SubtensorModule", "StakeRemoved", coldkey=ctx.signer, hotkey=p.hotkey,
             netuid=p.netuid, amount=p.amount_unstaked)


def transfer(ctx: Context, p: c.Transfer) -> None:
    debit(ctx, ctx.signer, p.value, "InsufficientBalance")
    credit(ctx, p.dest, p.value)
    ctx.emit("Balances", "Transfer", **{"from": ctx.signer, "to": p.dest, "amount": p.value})


def sudo_set(ctx: Context, p: c.SudoSet) -> None:
    subnet = _subnet(ctx, p.netuid)
    if ctx.signer not in (subnet.owner_coldkey, ctx.sudo):
        raise DispatchError("BadOrigin", "only the subnet owner or the devnet sudo key")
    if p.param == "commit_reveal_weights_enabled" and p.value:
        raise DispatchError("NotSupported", "commit-reveal needs drand; the devnet is offline")
    if p.param == "alpha_sigmoid_steepness" and isinstance(p.value, int) and p.value < 0 \
            and ctx.signer != ctx.sudo:
        raise DispatchError("NegativeSigmoidSteepness", "only the sudo key sets a negative one")
    if p.param == ALPHA_VALUES:
        _set_alpha_values(subnet.hyperparams, p.value)
    else:
        try:
            subnet.hyperparams[p.param] = coerce_param(p.param, p.value)
        except (KeyError, ValueError) as error:
            raise DispatchError("InvalidValue", str(error)) from None
    ctx.state.put_subnet(subnet)
    ctx.emit("AdminUtils", "HyperparameterSet", netuid=p.netuid, name=p.param, value=p.value)


def _set_alpha_values(hyperparams: dict[str, Any], pair: list[int]) -> None:
    """Liquid alpha's [alpha_low, alpha_high], with subtensor's checks."""
    low, high = pair
    if not hyperparams["liquid_alpha_enabled"]:
        raise DispatchError("LiquidAlphaDisabled", "enable liquid alpha on the subnet first")
    if high < ALPHA_VALUES_MIN:
        raise DispatchError("AlphaHighTooLow", f"alpha_high must be >= {ALPHA_VALUES_MIN}")
    if not ALPHA_VALUES_MIN <= low <= high:
        raise DispatchError("AlphaLowOutOfRange",
                            f"alpha_low must be in {ALPHA_VALUES_MIN}..alpha_high ({high})")
    hyperparams["alpha_low"], hyperparams["alpha_high"] = low, high


HANDLERS: dict[type, Callable[[Context, Any], None]] = {
    c.BurnedRegister: burned_register, c.RegisterNetwork: register_network,
    c.ServeAxon: serve_axon, c.SetWeights: set_weights, c.SetCommitment: set_commitment,
    c.AddStake: add_stake, c.RemoveStake: remove_stake, c.Transfer: transfer,
    c.SudoSet: sudo_set,
}


def dispatch(ctx: Context, params: Any) -> None:
    """Run one validated call (see :func:`chain.devnet.calls.parse_call`)."""
    HANDLERS[type(params)](ctx, params)
