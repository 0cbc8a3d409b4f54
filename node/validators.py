"""Find the subnet's validators (endpoint + pinned fingerprint) from the metagraph.

A validator is reachable when it holds a validator permit, has served an axon
("ip:port") and has published a ``ValidatorCommitment``. The lead validator (the one
whose aggregate and checkpoints every node follows) is the one with the most stake.

Example:
    >>> vals = find_validators(metagraph)
    >>> lead = lead_validator(metagraph)    # None when no validator is reachable
    >>> lead.url, lead.fingerprint
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.commitment import parse_commitment
from node.storage import StoreLocation


@dataclass(frozen=True)
class ValidatorEndpoint:
    """One reachable validator: where it listens and which certificate to pin."""

    uid: int
    hotkey: str
    url: str  # "https://ip:port"
    fingerprint: str  # sha256 hex of its certificate DER
    stake: float
    criteria_hash: str = ""
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


def find_validators(metagraph: Any, *, require_permit: bool = True) -> list[ValidatorEndpoint]:
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
    mg: Any, i: int, uid: int, commitments: dict[str, str], require_permit: bool
) -> ValidatorEndpoint | None:
    if require_permit and not bool(mg.validator_permit[i]):
        return None
    hotkey = str(mg.hotkeys[i])
    url = axon_url(mg.axons[i])
    commitment = parse_commitment(commitments.get(hotkey))
    if url is None or commitment is None:
        return None
    return ValidatorEndpoint(uid, hotkey, url, commitment.fp, float(mg.stake[i]), commitment.crit, commitment.st)


def lead_validator(metagraph: Any, *, require_permit: bool = True) -> ValidatorEndpoint | None:
    """The highest-stake reachable validator, or None."""
    found = find_validators(metagraph, require_permit=require_permit)
    return found[0] if found else None
