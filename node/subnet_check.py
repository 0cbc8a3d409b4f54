"""Does this node run the subnet config the lead validator runs? Checked before training starts.

Every validator commits the hash of its ``SubnetConfig`` on chain (``node.commitment``) and
serves the config itself at ``GET /subnet-config``. A node whose own config hash differs
from the lead's refuses to start, naming each field that differs and the command that
fetches the right file, instead of running with a config whose submissions would all be
refused (another ``inner_steps`` gives another data digest) or whose model never syncs
(another ``outer_lr`` gives other model hashes).

The config is fetched with ``node.fetch.fetch_subnet_config``.

Example:
    >>> await check_against(signed_client, lead_endpoint, cfg)   # SubnetConfigMismatch on a difference
"""

from __future__ import annotations

from node.fetch import Getter, fetch_subnet_config
from node.signed_http import NodeHttpError
from node.subnet_file import SubnetConfigError
from node.validators import ValidatorEndpoint
from protocol.subnet import SubnetConfig, config_diff


class SubnetConfigMismatch(SubnetConfigError):
    """This node's subnet config is not the one the lead validator runs."""


def fetch_hint(netuid: int) -> str:
    return (f"nodes of a subnet must share one config: fetch it with `swarmtrain subnet fetch --netuid {netuid} "
            "--out subnet.json` and start with --subnet-config subnet.json")


def mismatch_message(ours: SubnetConfig, endpoint: ValidatorEndpoint, theirs: SubnetConfig | None,
                     fetch_error: str = "") -> str:
    """One message: both hashes, every differing field (yours vs the validator's), and the fix."""
    head = (f"this node's subnet config (hash {ours.config_hash()[:12]}…) is not the one validator uid "
            f"{endpoint.uid} runs ({endpoint.config_hash[:12]}…)")
    if theirs is None:
        return f"{head}; its config could not be fetched to compare fields ({fetch_error}). {fetch_hint(ours.netuid)}"
    diffs = config_diff(ours, theirs)
    fields = "; ".join(f"{name}: yours {a!r}, the validator's {b!r}" for name, a, b in diffs)
    return f"{head}. Fields that differ: {fields}. {fetch_hint(ours.netuid)}"


def runs_another_config(endpoint: ValidatorEndpoint, cfg: SubnetConfig) -> bool:
    """The validator committed a config hash, and it is not ours."""
    return bool(endpoint.config_hash) and endpoint.config_hash != cfg.config_hash()


async def check_against(client: Getter, endpoint: ValidatorEndpoint, cfg: SubnetConfig) -> None:
    """Raise ``SubnetConfigMismatch`` (naming the differing fields) unless ``cfg`` is what
    ``endpoint`` committed; a validator that committed no config hash is not checked."""
    if not runs_another_config(endpoint, cfg):
        return
    theirs: SubnetConfig | None = None
    error = ""
    try:
        theirs = await fetch_subnet_config(client, endpoint)
    except (SubnetConfigError, NodeHttpError) as exc:
        error = str(exc)
    raise SubnetConfigMismatch(mismatch_message(cfg, endpoint, theirs, error))
