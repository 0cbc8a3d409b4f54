"""Find the subnet's validators (endpoint + pinned fingerprint) from the metagraph.

A validator is reachable when it has served an axon ("ip:port") and published a
``ValidatorCommitment``. Which reachable validators serve (take submissions) and which one
leads (its aggregates and checkpoints are everyone's) is ``protocol.lead``'s rule.

Example:
    >>> vals = serving_validators(metagraph)    # where a miner submits
    >>> lead = lead_validator(metagraph)        # None when no validator is reachable
    >>> lead.url, lead.fingerprint
"""

from __future__ import annotations

from dataclasses import dataclass

from chain.types import Metagraph
from node.commitment import parse_commitment
from node.storage import StoreLocation
from protocol.lead import lead_of
from protocol.lead import serving_validators as _serving


@dataclass(frozen=True)
class ValidatorEndpoint:
    """One reachable validator: where it listens and which certificate to pin."""

    uid: int
    hotkey: str
    url: str  # "https://ip:port"
    fingerprint: str  # sha256 hex of its certificate DER
    stake: float
    criteria_hash: str = ""
    config_hash: str = ""  # the subnet config hash it committed ("" when it did not)
    permit: bool = True  # holds a validator permit
    storage: StoreLocation | None = None  # its object store, when it publishes there (node.storage)


def axon_url(axon: str | None) -> str | None:
    """``"ip:port"`` -> ``"https://ip:port"``; None for an unserved or zero axon."""
    if not axon or ":" not in axon:
        return None
    host, _, port = axon.rpartition(":")
    if host in ("", "0.0.0.0", "0") or not port.isdigit() or int(port) == 0:
        return None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6 literal
    return f"https://{host}:{port}"


def find_validators(metagraph: Metagraph, *, require_permit: bool = True) -> list[ValidatorEndpoint]:
    """Reachable validators, highest stake first (ties: lower uid first).

    ``metagraph`` needs: ``uids``, ``hotkeys``, ``stake``, ``validator_permit``, ``axons``,
    ``commitments`` ({hotkey: str}), as ``chain.types.Metagraph`` has them.
    """
    found = []
    commitments = getattr(metagraph, "commitments", None) or {}
    for i, uid in enumerate(metagraph.uids):
        endpoint = _endpoint_at(metagraph, i, int(uid), commitments, require_permit)
        if endpoint is not None:
            found.append(endpoint)
    return sorted(found, key=lambda v: (-v.stake, v.uid))


def _endpoint_at(
    mg: Metagraph, i: int, uid: int, commitments: dict[str, str], require_permit: bool
) -> ValidatorEndpoint | None:
    if require_permit and not bool(mg.validator_permit[i]):
        return None
    hotkey = str(mg.hotkeys[i])
    url = axon_url(mg.axons[i])
    commitment = parse_commitment(commitments.get(hotkey))
    if url is None or commitment is None:
        return None
    return ValidatorEndpoint(uid, hotkey, url, commitment.fp, float(mg.stake[i]), criteria_hash=commitment.crit,
                             config_hash=commitment.cfg, permit=bool(mg.validator_permit[i]), storage=commitment.st)


def serving_validators(metagraph: Metagraph) -> list[ValidatorEndpoint]:
    """The validators miners submit to, the lead first (``protocol.lead``)."""
    return _serving(find_validators(metagraph, require_permit=False))


def lead_validator(metagraph: Metagraph) -> ValidatorEndpoint | None:
    """The validator whose aggregates every node applies (``protocol.lead``), or None."""
    return lead_of(find_validators(metagraph, require_permit=False))
