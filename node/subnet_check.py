"""Does this node run the subnet config the lead validator runs? Checked before training starts.

Every validator commits the hash of its ``SubnetConfig`` on chain (``node.commitment``) and
serves the config itself at ``GET /subnet-config``. A node whose own config hash differs
from the lead's refuses to start, naming each field that differs and the command that
fetches the right file, instead of running with a config whose submissions would all be
refused (another ``inner_steps`` gives another data digest) or whose model never syncs
(another ``outer_lr`` gives other model hashes).

Example:
    >>> reader = PinnedReader(timeout=10)
    >>> await check_against(reader, lead_endpoint, cfg)   # SubnetConfigMismatch on a difference
    >>> await reader.close()
"""

from __future__ import annotations

import asyncio
import json
from typing import Protocol

import aiohttp
from pydantic import ValidationError

from node.signed_http import NodeHttpError, parse_error
from node.subnet_file import SubnetConfigError, describe_config, documented, write_documented  # noqa: F401
from node.tls import pinned
from node.validators import ValidatorEndpoint
from protocol.subnet import SubnetConfig, config_diff

SUBNET_CONFIG_PATH = "/subnet-config"
MAX_CONFIG_BYTES = 1 << 20


class SubnetConfigMismatch(SubnetConfigError):
    """This node's subnet config is not the one the lead validator runs."""


class Getter(Protocol):
    """A GET over HTTPS pinned to a certificate fingerprint (``SignedClient`` has the same)."""

    async def get(self, url: str, path: str, *, receiver_hotkey: str | None,
                  pinned_fingerprint: str) -> tuple[int, bytes]: ...


class PinnedReader:
    """Unsigned GETs of a validator's public routes, pinned to the fingerprint on chain.

    For tools without a wallet (``swarmtrain status``, ``swarmtrain subnet fetch``); the
    validator serves its GETs without a signature.
    """

    def __init__(self, *, timeout: float = 10.0) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def get(self, url: str, path: str, *, receiver_hotkey: str | None = None,
                  pinned_fingerprint: str) -> tuple[int, bytes]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        target = url.rstrip("/") + path
        try:
            async with self._session.get(target, ssl=pinned(pinned_fingerprint)) as resp:
                return resp.status, await resp.content.read(MAX_CONFIG_BYTES * 8)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise NodeHttpError(f"GET {target} failed: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> PinnedReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def fetch_subnet_config(client: Getter, endpoint: ValidatorEndpoint) -> SubnetConfig:
    """The config a validator serves, checked against the hash it committed on chain."""
    status, body = await client.get(endpoint.url, SUBNET_CONFIG_PATH, receiver_hotkey=endpoint.hotkey,
                                    pinned_fingerprint=endpoint.fingerprint)
    if status != 200:
        code, reason = parse_error(body)
        raise SubnetConfigError(f"validator uid {endpoint.uid} answered GET {SUBNET_CONFIG_PATH} with "
                                f"{status} {code}: {reason}")
    try:
        cfg = SubnetConfig.model_validate(json.loads(body))
    except (ValueError, ValidationError) as exc:
        raise SubnetConfigError(f"validator uid {endpoint.uid} served an invalid subnet config: {exc}") from exc
    if endpoint.config_hash and cfg.config_hash() != endpoint.config_hash:
        raise SubnetConfigError(
            f"validator uid {endpoint.uid} serves a subnet config with hash {cfg.config_hash()[:12]}…, "
            f"but committed {endpoint.config_hash[:12]}… on chain: ask its operator, or fetch another validator's"
        )
    return cfg


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
