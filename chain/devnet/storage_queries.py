"""Storage reads: ``query`` / ``query_map`` over the devnet state, in the SDK's decoded shapes.

Shapes follow what the SDK's transport hands back from subtensor: ss58 strings for
accounts, plain ints for numbers, u16 scores as raw ints, bytes as 0x-hex, value
queries that are missing return their type default (0, False, []), option queries
(``Uids``, ``CommitmentOf``) return None. An item the devnet does not implement is a
:class:`ReadError`, never a silent default.

Example:
    >>> reader = StorageReader(state, cfg)                         # doctest: +SKIP
    >>> reader.query("SubtensorModule", "Uids", [1, hotkey])      # doctest: +SKIP
    0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chain.devnet.database import ChainState, Neuron, Subnet
from chain.devnet.params import STORAGE_ITEM_PARAM, DevnetConfig
from protocol.payout import SUBNET_OWNER_CUT_U16

ZERO_ACCOUNT = "5C4hrfjw9DjXZTzV3MwzrrAr9P1MJhSrvWGWqi1eSuyUpnhM"  # AccountId32 default
EMPTY_AXON = {"block": 0, "version": 0, "ip": 0, "port": 0, "ip_type": 0, "protocol": 0,
              "placeholder1": 0, "placeholder2": 0}
VECTOR_FIELDS = {
    "Rank": "rank", "Trust": "trust", "Consensus": "consensus", "Incentive": "incentive",
    "Dividends": "dividends", "ValidatorTrust": "validator_trust", "Emission": "emission",
    "PruningScores": "pruning_score", "LastUpdate": "last_update",
    "ValidatorPermit": "validator_permit", "Active": "active",
}


class ReadError(ValueError):
    """A read the devnet cannot answer; ``code`` is the RPC error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def hex_text(text: str) -> str:
    return "0x" + text.encode().hex()


def account_info(free: int, nonce: int) -> dict[str, Any]:
    """System.Account as decoded by the SDK."""
    return {"nonce": nonce, "consumers": 0, "providers": 1, "sufficients": 0,
            "data": {"free": free, "reserved": 0, "frozen": 0,
                     "flags": 170141183460469231731687303715884105728}}


def _arity(params: list, n: int, item: str) -> list:
    if len(params) != n:
        raise ReadError("BadParams", f"{item} takes {n} key(s), got {len(params)}")
    return params


def _int(value: Any, item: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReadError("BadParams", f"{item}: key {value!r} is not an integer")
    return value


class StorageReader:
    """Answers storage reads at the head; ``head`` is the current block number."""

    def __init__(self, state: ChainState, cfg: DevnetConfig, head: Callable[[], int]):
        self.state = state
        self.cfg = cfg
        self.head = head

    # Public -------------------------------------------------------------------

    def query(self, module: str, item: str, params: list) -> Any:
        handler = getattr(self, f"_q_{module}_{item}", None)
        if module == "SubtensorModule" and item in STORAGE_ITEM_PARAM:
            return self._hyperparam(item, params)
        if module == "SubtensorModule" and item in VECTOR_FIELDS:
            return self._vector(item, params)
        if handler is None:
            raise ReadError("NotImplemented", f"the devnet does not implement {module}.{item}")
        return handler(params)

    def query_map(self, module: str, item: str, params: list) -> list[tuple[Any, Any]]:
        handler = getattr(self, f"_m_{module}_{item}", None)
        if module == "SubtensorModule" and item in STORAGE_ITEM_PARAM and not params:
            return [(n, self._hyperparam(item, [n])) for n in self.state.netuids()]
        if handler is None:
            raise ReadError(
                "NotImplemented", f"the devnet does not implement query_map {module}.{item}"
            )
        return handler(params)

    # Helpers ------------------------------------------------------------------

    def _subnet_or_none(self, netuid: Any, item: str) -> Subnet | None:
        return self.state.subnet(_int(netuid, item))

    def _hyperparam(self, item: str, params: list) -> Any:
        (netuid,) = _arity(params, 1, item)
        subnet = self._subnet_or_none(netuid, item)
        if subnet is None:
            return 0
        return subnet.hyperparams.get(STORAGE_ITEM_PARAM[item], 0)

    def _vector(self, item: str, params: list) -> list:
        (netuid,) = _arity(params, 1, item)
        attr = VECTOR_FIELDS[item]
        return [getattr(n, attr) for n in self.state.neurons(_int(netuid, item))]

    def _neuron(self, netuid: Any, uid: Any, item: str) -> Neuron | None:
        return self.state.neuron(_int(netuid, item), _int(uid, item))

    # System / Timestamp / Balances ---------------------------------------------

    def _q_System_Account(self, params: list) -> dict:
        (address,) = _arity(params, 1, "Account")
        found = self.state.account(str(address))
        free, nonce = found if found is not None else (self.cfg.faucet_rao, 0)
        return account_info(free, nonce)

    def _q_System_Number(self, params: list) -> int:
        return self.head()

    def _q_System_BlockHash(self, params: list) -> str:
        (number,) = _arity(params, 1, "BlockHash")
        row = self.state.block(_int(number, "BlockHash"))
        return row["hash"] if row else "0x" + "00" * 32

    def _q_Timestamp_Now(self, params: list) -> int:
        head = self.state.head()
        return head[2] if head else 0

    def _q_Balances_TotalIssuance(self, params: list) -> int:
        return self.state.total_issuance()

    def _q_MevShield_NextKey(self, params: list) -> None:
        return None  # no MEV shield on the devnet: the SDK must submit calls in the clear

    # SubtensorModule: neurons ---------------------------------------------------

    def _q_SubtensorModule_Uids(self, params: list) -> int | None:
        netuid, hotkey = _arity(params, 2, "Uids")
        neuron = self.state.neuron_by_hotkey(_int(netuid, "Uids"), str(hotkey))
        return None if neuron is None else neuron.uid

    def _m_SubtensorModule_Uids(self, params: list) -> list:
        (netuid,) = _arity(params, 1, "Uids")
        return [(n.hotkey, n.uid) for n in self.state.neurons(_int(netuid, "Uids"))]

    def _q_SubtensorModule_Keys(self, params: list) -> str:
        netuid, uid = _arity(params, 2, "Keys")
        neuron = self._neuron(netuid, uid, "Keys")
        return ZERO_ACCOUNT if neuron is None else neuron.hotkey

    def _m_SubtensorModule_Keys(self, params: list) -> list:
        (netuid,) = _arity(params, 1, "Keys")
        return [(n.uid, n.hotkey) for n in self.state.neurons(_int(netuid, "Keys"))]

    def _q_SubtensorModule_BlockAtRegistration(self, params: list) -> int:
        netuid, uid = _arity(params, 2, "BlockAtRegistration")
        neuron = self._neuron(netuid, uid, "BlockAtRegistration")
        return 0 if neuron is None else neuron.registered_at

    def _q_SubtensorModule_Axons(self, params: list) -> dict:
        netuid, hotkey = _arity(params, 2, "Axons")
        neuron = self.state.neuron_by_hotkey(_int(netuid, "Axons"), str(hotkey))
        return dict((neuron.axon if neuron else None) or EMPTY_AXON)

    def _m_SubtensorModule_Axons(self, params: list) -> list:
        (netuid,) = _arity(params, 1, "Axons")
        neurons = self.state.neurons(_int(netuid, "Axons"))
        return [(n.hotkey, dict(n.axon)) for n in neurons if n.axon]

    def _q_SubtensorModule_Owner(self, params: list) -> str:
        (hotkey,) = _arity(params, 1, "Owner")
        return self.state.owner(str(hotkey)) or ZERO_ACCOUNT

    def _q_SubtensorModule_OwnedHotkeys(self, params: list) -> list[str]:
        (coldkey,) = _arity(params, 1, "OwnedHotkeys")
        return self.state.owned_hotkeys(str(coldkey))

    def _q_SubtensorModule_IsNetworkMember(self, params: list) -> bool:
        hotkey, netuid = _arity(params, 2, "IsNetworkMember")
        return _int(netuid, "IsNetworkMember") in self.state.hotkey_netuids(str(hotkey))

    def _m_SubtensorModule_IsNetworkMember(self, params: list) -> list:
        (hotkey,) = _arity(params, 1, "IsNetworkMember")
        return [(n, True) for n in self.state.hotkey_netuids(str(hotkey))]

    def _q_SubtensorModule_Weights(self, params: list) -> list:
        netuid, uid = _arity(params, 2, "Weights")
        rows = self.state.weights(_int(netuid, "Weights"))
        return [list(p) for p in rows.get(_int(uid, "Weights"), [])]

    def _m_SubtensorModule_Weights(self, params: list) -> list:
        (netuid,) = _arity(params, 1, "Weights")
        rows = self.state.weights(_int(netuid, "Weights"))
        return [(uid, [list(p) for p in row]) for uid, row in sorted(rows.items())]

    def _q_SubtensorModule_Bonds(self, params: list) -> list:
        netuid, uid = _arity(params, 2, "Bonds")
        rows = self.state.bonds(_int(netuid, "Bonds"))
        return [[d, round(v * 65535)] for d, v in rows.get(_int(uid, "Bonds"), [])]

    def _q_SubtensorModule_TotalHotkeyAlpha(self, params: list) -> int:
        hotkey, netuid = _arity(params, 2, "TotalHotkeyAlpha")
        return self.state.stake(str(hotkey), _int(netuid, "TotalHotkeyAlpha"))

    def _q_SubtensorModule_Alpha(self, params: list) -> int:
        hotkey, coldkey, netuid = _arity(params, 3, "Alpha")
        return self.state.stake(str(hotkey), _int(netuid, "Alpha"), str(coldkey))

    def _q_SubtensorModule_StakeThreshold(self, params: list) -> int:
        return 0

    def _q_SubtensorModule_AlphaValues(self, params: list) -> list[int]:
        """Liquid alpha's (alpha_low, alpha_high) as u16."""
        (netuid,) = _arity(params, 1, "AlphaValues")
        subnet = self._subnet_or_none(netuid, "AlphaValues")
        if subnet is None:
            return [0, 0]
        return [subnet.hyperparams["alpha_low"], subnet.hyperparams["alpha_high"]]

    def _q_SubtensorModule_SubnetOwnerCut(self, params: list) -> int:
        return SUBNET_OWNER_CUT_U16

    # SubtensorModule: subnets ---------------------------------------------------

    def _q_SubtensorModule_NetworksAdded(self, params: list) -> bool:
        (netuid,) = _arity(params, 1, "NetworksAdded")
        return self._subnet_or_none(netuid, "NetworksAdded") is not None

    def _m_SubtensorModule_NetworksAdded(self, params: list) -> list:
        return [(n, True) for n in self.state.netuids()]

    def _q_SubtensorModule_TotalNetworks(self, params: list) -> int:
        return len(self.state.netuids())

    def _q_SubtensorModule_SubnetworkN(self, params: list) -> int:
        (netuid,) = _arity(params, 1, "SubnetworkN")
        return self.state.neuron_count(_int(netuid, "SubnetworkN"))

    def _subnet_field(self, params: list, item: str, attr: str, default: Any) -> Any:
        (netuid,) = _arity(params, 1, item)
        subnet = self._subnet_or_none(netuid, item)
        return default if subnet is None else getattr(subnet, attr)

    def _q_SubtensorModule_SubnetOwner(self, params: list) -> str:
        return self._subnet_field(params, "SubnetOwner", "owner_coldkey", ZERO_ACCOUNT)

    def _q_SubtensorModule_SubnetOwnerHotkey(self, params: list) -> str:
        return self._subnet_field(params, "SubnetOwnerHotkey", "owner_hotkey", ZERO_ACCOUNT)

    def _q_SubtensorModule_NetworkRegisteredAt(self, params: list) -> int:
        return self._subnet_field(params, "NetworkRegisteredAt", "registered_at", 0)

    def _q_SubtensorModule_LastEpochBlock(self, params: list) -> int:
        return self._subnet_field(params, "LastEpochBlock", "last_epoch_block", 0)

    def _q_SubtensorModule_LastMechansimStepBlock(self, params: list) -> int:
        return self._subnet_field(params, "LastMechansimStepBlock", "last_epoch_block", 0)

    def _q_SubtensorModule_SubnetEpochIndex(self, params: list) -> int:
        return self._subnet_field(params, "SubnetEpochIndex", "epoch_index", 0)

    def _q_SubtensorModule_PendingEpochAt(self, params: list) -> int:
        _arity(params, 1, "PendingEpochAt")
        return 0

    def _q_SubtensorModule_BlocksSinceLastStep(self, params: list) -> int:
        last = self._subnet_field(params, "BlocksSinceLastStep", "last_epoch_block", None)
        return 0 if last is None else max(self.head() - last, 0)

    def _q_SubtensorModule_SubnetEpochConsensus(self, params: list) -> str:
        _arity(params, 1, "SubnetEpochConsensus")
        return "Yuma"

    def _q_SubtensorModule_SubtokenEnabled(self, params: list) -> bool:
        return self._q_SubtensorModule_NetworksAdded(params)

    def _q_SubtensorModule_SubnetMechanism(self, params: list) -> int:
        return 1 if self._q_SubtensorModule_NetworksAdded(params) else 0

    def _q_SubtensorModule_MechanismCountCurrent(self, params: list) -> int:
        return 1 if self._q_SubtensorModule_NetworksAdded(params) else 0

    def _q_SubtensorModule_TokenSymbol(self, params: list) -> str:
        symbol = self._subnet_field(params, "TokenSymbol", "symbol", "")
        return hex_text(symbol)

    def _m_SubtensorModule_TokenSymbol(self, params: list) -> list:
        return [(n, self._q_SubtensorModule_TokenSymbol([n])) for n in self.state.netuids()]

    def _q_SubtensorModule_SubnetName(self, params: list) -> str:
        return hex_text(self._subnet_field(params, "SubnetName", "name", ""))

    # Commitments ----------------------------------------------------------------

    def _q_Commitments_CommitmentOf(self, params: list) -> dict | None:
        netuid, hotkey = _arity(params, 2, "CommitmentOf")
        return self.state.commitment(_int(netuid, "CommitmentOf"), str(hotkey))

    def _m_Commitments_CommitmentOf(self, params: list) -> list:
        (netuid,) = _arity(params, 1, "CommitmentOf")
        return self.state.commitments(_int(netuid, "CommitmentOf"))

    def _q_Commitments_RevealedCommitments(self, params: list) -> None:
        _arity(params, 2, "RevealedCommitments")
        return None  # no timelocked commitments on the devnet

    def _m_Commitments_RevealedCommitments(self, params: list) -> list:
        _arity(params, 1, "RevealedCommitments")
        return []
