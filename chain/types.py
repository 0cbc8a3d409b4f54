"""Plain, frozen views of chain state that the nodes read (no SDK objects leak out)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


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
