"""The calls the devnet accepts, their parameter schemas and who must sign them.

A call that is not listed here, or whose params do not validate, is refused at the
pool (nothing included, nonce not used) — like a call that fails to decode on
subtensor. ``SIGNER_ROLE`` documents which key signs each call; the pallets enforce
it through the chain's own rules (a hotkey call from a key that is not a registered
hotkey fails with ``HotKeyNotRegisteredInSubNet``).

Example:
    >>> parse_call("SubtensorModule", "burned_register", {"netuid": 1, "hotkey": ALICE})
    BurnedRegister(netuid=1, hotkey='5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY')
"""

from __future__ import annotations

from typing import Annotated, Any

import bittensor_core
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from chain.devnet.params import MAX_COMMITMENT_FIELDS, MAX_RAW_BYTES, STORAGE_ITEM_PARAM

ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
U16 = Field(ge=0, le=65535)
U64 = Field(ge=0, le=2**64 - 1)


class CallRejected(ValueError):
    """A call the devnet cannot decode: unknown, or with invalid params."""


def valid_ss58(address: str) -> str:
    try:
        bittensor_core.ss58_decode(address)
    except (ValueError, TypeError) as error:
        raise ValueError(f"not an ss58 address: {address!r}") from error
    return address


SS58 = Annotated[str, AfterValidator(valid_ss58)]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BurnedRegister(_Params):
    netuid: int = U16
    hotkey: SS58


class RegisterNetwork(_Params):
    hotkey: SS58


class ServeAxon(_Params):
    netuid: int = U16
    version: int = Field(ge=0, le=2**32 - 1)
    ip: int = Field(ge=0, le=2**128 - 1)
    port: int = U16
    ip_type: int = Field(ge=0, le=255)
    protocol: int = Field(ge=0, le=255)
    placeholder1: int = Field(ge=0, le=255)
    placeholder2: int = Field(ge=0, le=255)


class SetWeights(_Params):
    netuid: int = U16
    mecid: int = Field(default=0, ge=0, le=255)
    dests: list[int] = Field(max_length=65536)
    weights: list[int] = Field(max_length=65536)
    version_key: int = U64

    @field_validator("dests", "weights")
    @classmethod
    def _u16s(cls, values: list[int]) -> list[int]:
        if any(not 0 <= v <= 65535 for v in values):
            raise ValueError("uids and weights are u16 (0..65535)")
        return values


class SetCommitment(_Params):
    netuid: int = U16
    info: dict[str, Any]

    @field_validator("info")
    @classmethod
    def _fields(cls, info: dict[str, Any]) -> dict[str, Any]:
        if set(info) != {"fields"} or not isinstance(info["fields"], list):
            raise ValueError('info must be {"fields": [...]}')
        return {"fields": normalize_fields(info["fields"])}


class AddStake(_Params):
    hotkey: SS58
    netuid: int = U16
    amount_staked: int = U64
    limit_price: int | None = Field(default=None, ge=0)
    allow_partial: bool = False


class RemoveStake(_Params):
    hotkey: SS58
    netuid: int = U16
    amount_unstaked: int = U64
    limit_price: int | None = Field(default=None, ge=0)
    allow_partial: bool = False


class Transfer(_Params):
    dest: str
    value: int = U64

    @field_validator("dest", mode="before")
    @classmethod
    def _dest(cls, v: Any) -> str:
        if isinstance(v, dict) and set(v) == {"Id"}:  # MultiAddress::Id
            v = v["Id"]
        return valid_ss58(v)


class SudoSet(_Params):
    """AdminUtils.sudo_set_<param>(netuid, <value>): the one value is kept in ``value``.

    ``sudo_set_alpha_values(netuid, alpha_low, alpha_high)`` sets two hyperparameters at
    once: ``param`` is ``alpha_values`` and ``value`` the pair ``[alpha_low, alpha_high]``.
    """

    netuid: int = U16
    param: str
    value: Any


CALLS: dict[tuple[str, str], type[_Params]] = {
    ("SubtensorModule", "burned_register"): BurnedRegister,
    ("SubtensorModule", "register_network"): RegisterNetwork,
    ("SubtensorModule", "serve_axon"): ServeAxon,
    ("SubtensorModule", "set_weights"): SetWeights,
    ("SubtensorModule", "set_mechanism_weights"): SetWeights,
    ("SubtensorModule", "add_stake"): AddStake,
    ("SubtensorModule", "add_stake_limit"): AddStake,
    ("SubtensorModule", "remove_stake"): RemoveStake,
    ("SubtensorModule", "remove_stake_limit"): RemoveStake,
    ("Commitments", "set_commitment"): SetCommitment,
    ("Balances", "transfer_keep_alive"): Transfer,
    ("Balances", "transfer_allow_death"): Transfer,
}

SIGNER_ROLE: dict[str, str] = {
    "burned_register": "coldkey", "register_network": "coldkey", "add_stake": "coldkey",
    "add_stake_limit": "coldkey", "remove_stake": "coldkey", "remove_stake_limit": "coldkey",
    "transfer_keep_alive": "coldkey", "transfer_allow_death": "coldkey",
    "serve_axon": "hotkey", "set_weights": "hotkey", "set_mechanism_weights": "hotkey",
    "set_commitment": "hotkey", "sudo_set_*": "subnet owner coldkey or the devnet sudo key",
}

# AdminUtils.sudo_set_<suffix> whose suffix is not the hyperparameter's own name
SUDO_ALIASES: dict[str, str] = {
    "weights_set_rate_limit": "weights_rate_limit",
    "max_weight_limit": "max_weights_limit",
    "weights_version_key": "weights_version",
    "max_allowed_validators": "max_validators",
    "network_registration_allowed": "registration_allowed",
    "bonds_moving_average": "bonds_moving_avg",
    "max_registrations_per_block": "max_regs_per_block",
    "target_registrations_per_interval": "target_regs_per_interval",
}


def sudo_param_name(function: str) -> str | None:
    """The hyperparameter an ``AdminUtils.sudo_set_*`` call sets, or None."""
    if not function.startswith("sudo_set_"):
        return None
    suffix = function.removeprefix("sudo_set_")
    name = SUDO_ALIASES.get(suffix, suffix)
    known = set(STORAGE_ITEM_PARAM.values()) | {"weights_min_stake"}
    return name if name in known else None


def parse_call(module: str, function: str, params: dict[str, Any]) -> _Params:
    """Validate a call; raises :class:`CallRejected` with the reason."""
    if module == "AdminUtils":
        return _parse_sudo(function, params)
    schema = CALLS.get((module, function))
    if schema is None:
        raise CallRejected(f"the devnet does not implement {module}.{function}")
    try:
        return schema.model_validate(params)
    except ValidationError as error:
        raise CallRejected(f"bad params for {module}.{function}: {_first_error(error)}") from None


ALPHA_VALUES = "alpha_values"  # the pseudo-parameter of sudo_set_alpha_values


def _parse_sudo(function: str, params: dict[str, Any]) -> SudoSet:
    if function == f"sudo_set_{ALPHA_VALUES}":
        return _parse_alpha_values(params)
    name = sudo_param_name(function)
    if name is None:
        raise CallRejected(f"the devnet does not implement AdminUtils.{function}")
    values = [v for k, v in params.items() if k != "netuid"]
    if "netuid" not in params or len(values) != 1:
        raise CallRejected(f"AdminUtils.{function} takes netuid and one value")
    try:
        return SudoSet(netuid=params["netuid"], param=name, value=values[0])
    except ValidationError as error:
        raise CallRejected(f"bad params for AdminUtils.{function}: {_first_error(error)}") from None


def _parse_alpha_values(params: dict[str, Any]) -> SudoSet:
    if set(params) != {"netuid", "alpha_low", "alpha_high"}:
        raise CallRejected("AdminUtils.sudo_set_alpha_values takes netuid, alpha_low, alpha_high")
    pair = [params["alpha_low"], params["alpha_high"]]
    if any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 65535 for v in pair):
        raise CallRejected("bad params for AdminUtils.sudo_set_alpha_values: u16 values")
    try:
        return SudoSet(netuid=params["netuid"], param=ALPHA_VALUES, value=pair)
    except ValidationError as error:
        raise CallRejected(f"bad params for AdminUtils.sudo_set_alpha_values: "
                           f"{_first_error(error)}") from None


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))


def normalize_fields(fields: list[Any]) -> list[dict[str, str]]:
    """Commitment ``Data`` fields as the chain stores them: ``[{"RawN": "0x.."}]``.

    Accepts the shapes clients send: ``{"RawN": hex | bytes | str | [ints]}`` entries,
    optionally wrapped one level deeper (``[[{...}]]``, the old SDK shape).
    """
    if len(fields) == 1 and isinstance(fields[0], list):
        fields = fields[0]
    if len(fields) > MAX_COMMITMENT_FIELDS:
        raise ValueError(f"at most {MAX_COMMITMENT_FIELDS} commitment fields")
    return [_normalize_field(entry) for entry in fields]


def _normalize_field(entry: Any) -> dict[str, str]:
    if not isinstance(entry, dict) or len(entry) != 1:
        raise ValueError("each commitment field is a one-key dict like {'Raw5': '0x..'}")
    ((variant, value),) = entry.items()
    size = int(variant[3:]) if variant.startswith("Raw") and variant[3:].isdigit() else 32
    data = _field_bytes(value, size)
    if variant.startswith("Raw"):
        if variant != f"Raw{len(data)}" or len(data) > MAX_RAW_BYTES:
            raise ValueError(f"{variant} does not hold {len(data)} bytes (Raw0..Raw128)")
    elif variant in ("Sha256", "Keccak256", "ShaThree256", "BlakeTwo256"):
        if len(data) != 32:
            raise ValueError(f"{variant} holds 32 bytes")
    else:
        raise ValueError(f"commitment variant {variant!r} is not supported on the devnet")
    return {variant: "0x" + data.hex()}


def _field_bytes(value: Any, size: int) -> bytes:
    """Bytes of a field value; a str is 0x-hex, else text of ``size`` bytes, else bare hex."""
    if isinstance(value, str):
        if value.startswith("0x"):
            return _hex(value[2:]) or value.encode()
        if len(value.encode()) != size and len(value) == 2 * size and _hex(value) is not None:
            return _hex(value) or b""
        return value.encode()
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value)
    raise ValueError("commitment data must be hex, text or a list of byte values")


def _hex(text: str) -> bytes | None:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None
