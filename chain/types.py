"""Plain, frozen views of chain state that the nodes read (no SDK objects leak out)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import bittensor as bt


@dataclass(frozen=True)
class Metagraph:
    """A subnet's neurons at one block, as parallel lists indexed by position (= uid order).

    ``stake`` is each neuron's stake weight as a float (the subnet's total stake,
    which is TAO on the devnet); ``axons`` is "ip:port" or None when unserved;
    ``commitments`` maps hotkey -> committed text for hotkeys that have one.

    Example::

        mg = await chain.metagraph(1)
        uid = mg.uid_of(wallet.hotkey.ss58_address)
        print(mg.stake[uid], mg.axons[uid], mg.commitments.get(mg.hotkeys[uid]))
    """

    netuid: int
    block: int
    uids: list[int] = field(default_factory=list)
    hotkeys: list[str] = field(default_factory=list)
    coldkeys: list[str] = field(default_factory=list)
    stake: list[float] = field(default_factory=list)
    validator_permit: list[bool] = field(default_factory=list)
    axons: list[str | None] = field(default_factory=list)
    last_update: list[int] = field(default_factory=list)
    incentive: list[float] = field(default_factory=list)
    dividends: list[float] = field(default_factory=list)
    emission: list[float] = field(default_factory=list)
    consensus: list[float] = field(default_factory=list)
    commitments: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.uids)

    def uid_of(self, hotkey: str) -> int | None:
        """The uid registered under ``hotkey``, or None."""
        for uid, key in zip(self.uids, self.hotkeys, strict=True):
            if key == hotkey:
                return uid
        return None

    def neurons(self) -> list[dict[str, Any]]:
        """One dict per neuron (uid order), the shape ``status --json`` prints."""
        return [
            {
                "uid": self.uids[i],
                "hotkey": self.hotkeys[i],
                "coldkey": self.coldkeys[i],
                "stake": self.stake[i],
                "validator_permit": self.validator_permit[i],
                "incentive": self.incentive[i],
                "dividends": self.dividends[i],
                "emission": self.emission[i],
                "consensus": self.consensus[i],
                "last_update": self.last_update[i],
                "axon": self.axons[i],
                "commitment": self.commitments.get(self.hotkeys[i]),
            }
            for i in range(len(self.uids))
        ]

    def to_dict(self) -> dict[str, Any]:
        """``{"netuid", "block", "neurons": [...]}``, JSON-ready."""
        return {"netuid": self.netuid, "block": self.block, "neurons": self.neurons()}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)


@dataclass(frozen=True)
class SubnetHyperparams:
    """The subnet settings the nodes act on (raw chain values; ``burn`` in TAO).

    ``max_weights_limit`` is the raw u16 cap (65535 = a single uid may hold all weight).

    Example::

        hp = await chain.hyperparameters(1)
        if hp.commit_reveal_enabled: ...
    """

    netuid: int
    tempo: int
    weights_rate_limit: int
    commit_reveal_enabled: bool
    min_allowed_weights: int
    max_weights_limit: int
    activity_cutoff: int
    immunity_period: int
    max_allowed_uids: int
    max_allowed_validators: int
    burn: float
    pow_registration_allowed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_BOOL_PARAMS = ("commit_reveal_enabled", "pow_registration_allowed")


def hyperparams_from_raw(netuid: int, raw: Mapping[str, Any]) -> SubnetHyperparams:
    """Build ``SubnetHyperparams`` from raw storage values (missing values read as 0)."""
    ints = {k: int(v or 0) for k, v in raw.items() if k not in _BOOL_PARAMS and k != "burn"}
    return SubnetHyperparams(
        netuid=netuid,
        burn=int(raw.get("burn") or 0) / 1e9,
        commit_reveal_enabled=bool(raw.get("commit_reveal_enabled")),
        pow_registration_allowed=bool(raw.get("pow_registration_allowed")),
        **ints,
    )


def metagraph_from_sdk(graph: bt.Metagraph) -> Metagraph:
    """Our frozen ``Metagraph`` from the SDK's: plain floats/ints/bools/strings."""
    neurons = list(graph.neurons)
    commitments = {
        n.hotkey: n.commitment.value
        for n in neurons
        if n.commitment is not None and n.commitment.value is not None
    }
    return Metagraph(
        netuid=graph.netuid,
        block=graph.block,
        uids=[n.uid for n in neurons],
        hotkeys=[n.hotkey for n in neurons],
        coldkeys=[n.coldkey for n in neurons],
        stake=[float(n.total_stake.amount) for n in neurons],
        validator_permit=[bool(n.validator_permit) for n in neurons],
        axons=[n.axon for n in neurons],
        last_update=[int(n.last_update) for n in neurons],
        incentive=[float(n.incentive) for n in neurons],
        dividends=[float(n.dividends) for n in neurons],
        emission=[float(n.emission.amount) for n in neurons],
        consensus=[float(n.consensus) for n in neurons],
        commitments=commitments,
    )
