"""Runtime API calls the SDK's reads make, answered from the devnet state.

``SubnetInfoRuntimeApi.get_metagraph`` returns the keys ``bittensor/metagraph.py::_build``
reads; ``NeuronInfoRuntimeApi.get_neurons_lite`` the NeuronInfoLite records;
``get_subnet_hyperparams_v3`` the ``[{"name", "value": {type_tag: raw}}]`` list.
The devnet's pool price is fixed at 1 TAO per alpha.

Example:
    >>> api = RuntimeApi(state, cfg, head=lambda: 12)                       # doctest: +SKIP
    >>> api.call("SubnetInfoRuntimeApi", "get_metagraph", [1])["num_uids"]  # doctest: +SKIP
    2
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chain.devnet.database import ChainState, Neuron, Subnet
from chain.devnet.params import PARAM_TYPES, RAO_PER_TAO, DevnetConfig
from chain.devnet.storage_queries import EMPTY_AXON, ReadError

POOL_RESERVE_RAO = 1_000_000 * RAO_PER_TAO  # tao_in == alpha_in: price 1.0
I96F32_ONE = 2**32
I32F32_ONE = 2**32  # fixed point with 32 fractional bits: raw bits of 1.0


def hyperparam_entry(name: str, value: Any) -> dict[str, Any]:
    """One v3 ``{"name", "value": {type_tag: raw}}`` entry; I32F32 carries its raw bits."""
    tag = PARAM_TYPES.get(name, "u64")
    raw = {"bits": int(value) * I32F32_ONE} if tag == "I32F32" else value
    return {"name": name, "value": {tag: raw}}


def _netuid(params: list, method: str, n: int = 1) -> list[int]:
    if len(params) != n or any(isinstance(p, bool) or not isinstance(p, int) for p in params):
        raise ReadError("BadParams", f"{method} takes {n} integer param(s), got {params!r}")
    return params


class RuntimeApi:
    """Answers ``runtime_call(api, method, params)`` at the head."""

    def __init__(self, state: ChainState, cfg: DevnetConfig, head: Callable[[], int]):
        self.state = state
        self.cfg = cfg
        self.head = head

    def call(self, api: str, method: str, params: list) -> Any:
        handler = getattr(self, f"_{api}_{method}", None)
        if handler is None:
            raise ReadError("NotImplemented", f"the devnet does not implement {api}.{method}")
        return handler(params)

    # Neurons ------------------------------------------------------------------

    def _neuron_lite(self, n: Neuron) -> dict[str, Any]:
        stake = self.state.stake(n.hotkey, n.netuid)
        return {
            "hotkey": n.hotkey, "coldkey": n.coldkey, "uid": n.uid, "netuid": n.netuid,
            "active": n.active, "axon_info": dict(n.axon or EMPTY_AXON),
            "prometheus_info": {"block": 0, "version": 0, "ip": 0, "port": 0, "ip_type": 0},
            "stake": [(n.coldkey, stake)], "rank": n.rank, "emission": n.emission,
            "incentive": n.incentive, "consensus": n.consensus, "trust": n.trust,
            "validator_trust": n.validator_trust, "dividends": n.dividends,
            "last_update": n.last_update, "validator_permit": n.validator_permit,
            "pruning_score": n.pruning_score,
        }

    def _NeuronInfoRuntimeApi_get_neurons_lite(self, params: list) -> list[dict]:
        (netuid,) = _netuid(params, "get_neurons_lite")
        return [self._neuron_lite(n) for n in self.state.neurons(netuid)]

    def _NeuronInfoRuntimeApi_get_neuron_lite(self, params: list) -> dict | None:
        netuid, uid = _netuid(params, "get_neuron_lite", 2)
        neuron = self.state.neuron(netuid, uid)
        return None if neuron is None else self._neuron_lite(neuron)

    def _NeuronInfoRuntimeApi_get_neurons(self, params: list) -> list[dict]:
        (netuid,) = _netuid(params, "get_neurons")
        weights = self.state.weights(netuid)
        bonds = self.state.bonds(netuid)
        out = []
        for n in self.state.neurons(netuid):
            record = self._neuron_lite(n)
            record["weights"] = [tuple(p) for p in weights.get(n.uid, [])]
            record["bonds"] = [(d, round(v * 65535)) for d, v in bonds.get(n.uid, [])]
            out.append(record)
        return out

    # Subnets ------------------------------------------------------------------

    def _SubnetInfoRuntimeApi_get_subnet_hyperparams_v3(self, params: list) -> list | None:
        (netuid,) = _netuid(params, "get_subnet_hyperparams_v3")
        subnet = self.state.subnet(netuid)
        if subnet is None:
            return None
        entries = [hyperparam_entry(name, value) for name, value in subnet.hyperparams.items()]
        yuma_version = 3 if subnet.hyperparams.get("yuma3_enabled") else 2  # derived, as chain
        return [*entries, {"name": "yuma_version", "value": {"u16": yuma_version}}]

    def _SubnetInfoRuntimeApi_get_metagraph(self, params: list) -> dict | None:
        (netuid,) = _netuid(params, "get_metagraph")
        subnet = self.state.subnet(netuid)
        if subnet is None:
            return None
        return self._metagraph(subnet, self.state.neurons(netuid))

    def _metagraph(self, subnet: Subnet, neurons: list[Neuron]) -> dict[str, Any]:
        head = self.head()
        stakes = [self.state.stake(n.hotkey, subnet.netuid) for n in neurons]
        graph: dict[str, Any] = {
            "netuid": subnet.netuid, "name": list(subnet.name.encode()),
            "symbol": list(subnet.symbol.encode()), "identity": None,
            "network_registered_at": subnet.registered_at,
            "owner_hotkey": subnet.owner_hotkey, "owner_coldkey": subnet.owner_coldkey,
            "block": head, "tempo": subnet.hyperparams["tempo"],
            "last_step": subnet.last_epoch_block,
            "blocks_since_last_step": max(head - subnet.last_epoch_block, 0),
            "num_uids": len(neurons), "max_uids": subnet.hyperparams["max_allowed_uids"],
            "tao_in": POOL_RESERVE_RAO, "alpha_in": POOL_RESERVE_RAO, "alpha_out": 0,
            "moving_price": {"bits": I96F32_ONE},
            "hotkeys": [n.hotkey for n in neurons], "coldkeys": [n.coldkey for n in neurons],
            "identities": [None for _ in neurons],
            "axons": [dict(n.axon or EMPTY_AXON) for n in neurons],
            "active": [n.active for n in neurons],
            "validator_permit": [n.validator_permit for n in neurons],
            "last_update": [n.last_update for n in neurons],
            "block_at_registration": [n.registered_at for n in neurons],
            "alpha_stake": stakes, "tao_stake": [0 for _ in neurons], "total_stake": stakes,
        }
        for key in ("rank", "trust", "consensus", "dividends", "pruning_score",
                    "validator_trust", "emission"):
            graph[key] = [getattr(n, key) for n in neurons]
        graph["incentives"] = [n.incentive for n in neurons]
        graph.update({k: v for k, v in subnet.hyperparams.items() if k not in graph})
        return graph

    def _SwapRuntimeApi_current_alpha_price(self, params: list) -> int:
        (netuid,) = _netuid(params, "current_alpha_price")
        return RAO_PER_TAO if self.state.subnet(netuid) is not None else 0
