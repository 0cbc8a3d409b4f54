"""The one way to the chain: a small async facade over the bittensor SDK's ``bt.Client``.

The same code drives the embedded devnet (``devnet`` / ``devnet://HOST:PORT``, through
``chain.devnet.substrate.DevnetSubstrate``) and the real networks (``finney``, ``test``,
``local``, any ``ws://`` / ``wss://`` endpoint, through the SDK's own RPC backend).

Example::

    async with await Chain.connect("devnet", timeout=10) as chain:
        uid = await chain.register(wallet, 1)
        await chain.serve(wallet, 1, "127.0.0.1", 8443)
        mg = await chain.metagraph(1)
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import bittensor as bt
from bittensor import storage as st
from bittensor.keyfiles import KeyfileError
from bittensor.settings import NETWORKS

from chain.errors import (
    TRANSPORT_ERRORS,
    ChainConnectionError,
    ChainError,
    ChainTimeoutError,
    NotRegisteredError,
    RateLimitedError,
    UnknownNetworkError,
    domain_error,
)
from chain.types import Metagraph, SubnetHyperparams, hyperparams_from_raw, metagraph_from_sdk
from chain.wallets import Wallet, coldkey_address, hotkey_address
from protocol.retry import poll_until, retry

T = TypeVar("T")

DEVNET_DEFAULT_URL = "devnet://127.0.0.1:9946"
REAL_NETWORKS = ("finney", "test", "local")
# Commitments pallet: each Raw field holds at most 128 bytes; the runtime allows 3 fields.
COMMIT_FIELD_BYTES = 128
COMMIT_MAX_FIELDS = 3


def network_url(network: str) -> str:
    """The endpoint for a network name: devnet://HOST:PORT, ws://... or wss://...

    >>> network_url("devnet")
    'devnet://127.0.0.1:9946'
    """
    if network == "devnet":
        return DEVNET_DEFAULT_URL
    if network.startswith("devnet://"):
        _devnet_host_port(network)  # validates
        return network
    if network in REAL_NETWORKS:
        return NETWORKS[network]
    if network.startswith(("ws://", "wss://")):
        return network
    raise UnknownNetworkError(
        f"unknown network {network!r}",
        reason="use devnet, devnet://HOST:PORT, finney, test, local, or a ws:// / wss:// URL",
    )


def is_devnet(url: str) -> bool:
    return url.startswith("devnet://")


def _devnet_host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "devnet" or not parts.hostname or port is None:
        raise UnknownNetworkError(f"bad devnet url {url!r}", reason="expected devnet://HOST:PORT")
    return parts.hostname, port


def devnet_http_url(url: str) -> str:
    """devnet://HOST:PORT -> http://HOST:PORT (what the devnet server listens on)."""
    host, port = _devnet_host_port(url)
    return f"http://{host}:{port}"


def poll_interval_for(block_time: float) -> float:
    """Seconds between polls while waiting for a block: a quarter block, within [0.05, 3].

    >>> poll_interval_for(12.0), poll_interval_for(0.2)
    (3.0, 0.05)
    """
    return min(3.0, max(0.05, block_time / 4))


def normalize_weights(weights: Mapping[int, float]) -> dict[int, float]:
    """Weights scaled to sum 1, zeros dropped; ValueError on negatives, NaN or all zero.

    >>> normalize_weights({0: 1.0, 3: 3.0, 5: 0.0})
    {0: 0.25, 3: 0.75}
    """
    bad = {uid: w for uid, w in weights.items() if not math.isfinite(w) or w < 0 or uid < 0}
    if bad:
        raise ValueError(f"weights must be finite, non-negative, on uids >= 0; got {bad}")
    total = math.fsum(weights.values())
    if total <= 0:
        raise ValueError("all weights are zero; nothing to set")
    return {int(uid): w / total for uid, w in sorted(weights.items()) if w > 0}


def commitment_fields(data: str) -> list[dict[str, str]]:
    """The Commitments ``fields`` for a text: Raw<N> chunks of at most 128 bytes, hex encoded."""
    raw = data.encode("utf-8")
    if not raw:
        raise ValueError("commitment text is empty")
    chunks = [raw[i : i + COMMIT_FIELD_BYTES] for i in range(0, len(raw), COMMIT_FIELD_BYTES)]
    if len(chunks) > COMMIT_MAX_FIELDS:
        limit = COMMIT_FIELD_BYTES * COMMIT_MAX_FIELDS
        raise ValueError(f"commitment is {len(raw)} bytes; the chain stores at most {limit}")
    return [{f"Raw{len(c)}": "0x" + c.hex()} for c in chunks]


def rate_limit_remaining(block: int, last_update: int, rate_limit: int) -> int:
    """Blocks still to wait before weights may be set again (0 = allowed now).

    The chain allows a set when ``block - last_update >= rate_limit``; a hotkey that
    never set weights (last_update 0) is never limited.
    """
    if rate_limit <= 0 or last_update <= 0:
        return 0
    return max(0, rate_limit - (block - last_update))


class Chain:
    """Typed async access to one chain; every call has a timeout and raises domain errors.

    Reads that lose the connection are tried again (backoff ``protocol.retry.TRANSIENT_BACKOFF``)
    until the timeout; writes are sent once (a lost answer does not mean a lost extrinsic).

    Example::

        chain = await Chain.connect("devnet://127.0.0.1:9946", timeout=10)
        try:
            print(await chain.block())
        finally:
            await chain.close()
    """

    def __init__(
        self, client: bt.Client, url: str, *, timeout: float = 30.0, block_time: float = 0.4
    ) -> None:
        self.client = client
        self.url = url
        self.timeout = timeout
        self.block_time = block_time  # seconds per block, as the chain reports it
        self.poll_interval = poll_interval_for(block_time)  # seconds between block polls
        # A write waits for inclusion: allow a few blocks even when reads get less.
        self.write_timeout = max(timeout, 6 * block_time)

    # --- lifecycle -----------------------------------------------------------------

    @classmethod
    async def connect(cls, network: str, *, timeout: float = 30.0) -> Chain:
        """Open a connection; ``ChainConnectionError`` when nothing answers."""
        url = network_url(network)
        client = _build_client(url, timeout)
        try:
            await asyncio.wait_for(client.connect(), timeout)
            block_time = await asyncio.wait_for(client.block_time(), timeout)
        except (asyncio.TimeoutError, *TRANSPORT_ERRORS, bt.BittensorError) as err:
            await _quiet_close(client)
            if not is_devnet(url) and await _is_devnet_endpoint(url):
                host_port = urlsplit(url).netloc
                raise ChainConnectionError(
                    f"{url} is a swarmtrain devnet, not a subtensor node",
                    reason=f"use --subtensor.network devnet://{host_port}",
                ) from err
            raise _connect_error(url, err) from err
        return cls(client, url, timeout=timeout, block_time=float(block_time))

    async def close(self) -> None:
        await _quiet_close(self.client)

    async def __aenter__(self) -> Chain:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    @property
    def is_devnet(self) -> bool:
        return is_devnet(self.url)

    async def _call(self, what: str, aw: Awaitable[T], timeout: float | None = None) -> T:
        """Await ``aw`` under the timeout, translating every failure to a domain error."""
        try:
            return await asyncio.wait_for(aw, timeout or self.timeout)
        except ChainError:
            raise
        except (asyncio.TimeoutError, bt.BittensorError, KeyfileError, *TRANSPORT_ERRORS) as err:
            raise domain_error(err, what) from err

    async def _read(self, what: str, make: Callable[[], Awaitable[T]]) -> T:
        """``_call`` of a fresh ``make()``, tried again on ``ChainConnectionError`` until the timeout."""
        return await retry(lambda: self._call(what, make()), timeout=self.timeout, retry_on=(ChainConnectionError,))

    async def _submit(self, what: str, aw: Awaitable[bt.ExtrinsicResult]) -> bt.ExtrinsicResult:
        """Submit and raise the chain's reason when the extrinsic failed."""
        result = await self._call(what, aw, timeout=self.write_timeout)
        if not result.success:
            raise domain_error(result.error or bt.ChainError(result.message or "failed"), what)
        return result

    # --- reads -----------------------------------------------------------------------

    async def block(self) -> int:
        return int(await self._read("read block", self.client.block))

    async def wait_for_block(self, block: int, *, timeout: float) -> int:
        """Poll until the chain reaches ``block``; returns the block seen; ChainTimeoutError."""
        return await poll_until(
            self.block, lambda current: current >= block, timeout=timeout, interval=self.poll_interval,
            on_timeout=lambda current: ChainTimeoutError(
                f"block {block} not reached within {timeout:g}s", reason=f"chain at {current}"
            ),
        )

    async def uid_of(self, netuid: int, hotkey_ss58: str) -> int | None:
        """The hotkey's uid on ``netuid``, or None when unregistered."""
        uid = await self._read(
            "read uid", lambda: self.client.query(_pair(st.SubtensorModule.Uids), [netuid, hotkey_ss58])
        )
        return None if uid is None else int(uid)

    async def metagraph(self, netuid: int) -> Metagraph:
        graph = await self._read("read metagraph", lambda: self.client.subnets.metagraph(netuid))
        if graph is None:
            raise ChainError(f"subnet {netuid} does not exist on {self.url}",
                             reason="check --netuid (the subnet owner publishes it; a devnet starts with netuid 1)")
        return metagraph_from_sdk(graph)

    async def hyperparameters(self, netuid: int) -> SubnetHyperparams:
        """The subnet's settings, all read at the same block."""
        await self._require_subnet(netuid)
        block = await self.block()
        items = _HYPERPARAM_ITEMS
        values = await self._read(
            "read hyperparameters",
            lambda: asyncio.gather(
                *(self.client.query(item, [netuid], block=block) for item in items.values())
            ),
        )
        raw = dict(zip(items, values, strict=True))
        return hyperparams_from_raw(netuid, raw)

    async def balance(self, coldkey_ss58: str) -> float:
        """Free TAO of an account."""
        account = await self._read(
            "read balance", lambda: self.client.query(_pair(st.System.Account), [coldkey_ss58])
        )
        return int(((account or {}).get("data") or {}).get("free") or 0) / 1e9

    async def _require_subnet(self, netuid: int) -> None:
        exists = await self._read(
            "read subnet", lambda: self.client.query(_pair(st.SubtensorModule.NetworksAdded), [netuid])
        )
        if not exists:
            raise ChainError(f"subnet {netuid} does not exist on {self.url}",
                             reason="check --netuid (the subnet owner publishes it; a devnet starts with netuid 1)")

    async def _require_uid(self, netuid: int, hotkey_ss58: str) -> int:
        uid = await self.uid_of(netuid, hotkey_ss58)
        if uid is None:
            raise NotRegisteredError(
                f"hotkey {hotkey_ss58} is not registered on netuid {netuid}",
                reason="run `swarmtrain register` first",
            )
        return uid

    # --- writes ----------------------------------------------------------------------

    async def register(
        self, wallet: Wallet, netuid: int, *, pow: bool = False, pow_timeout: float = 300.0
    ) -> int:
        """Register the wallet's hotkey (burned, or proof of work); returns its uid. Idempotent."""
        hotkey = hotkey_address(wallet)
        uid = await self.uid_of(netuid, hotkey)
        if uid is not None:
            return uid
        await self._require_subnet(netuid)
        if pow:
            await self._register_pow(wallet, netuid, hotkey, pow_timeout)
        else:
            await self._register_burned(wallet, netuid, hotkey)
        return await self._wait_for_uid(netuid, hotkey)

    async def _register_burned(self, wallet: Wallet, netuid: int, hotkey: str) -> None:
        if await self._mev_shield_active():
            # Real networks require burned registration to go through the MEV shield.
            aw = self.client.execute(
                bt.BurnedRegister(netuid=netuid, hotkey_ss58=hotkey),
                wallet,
                wait_for_finalization=False,
            )
        else:
            call = bt.calls.SubtensorModule.burned_register(netuid=netuid, hotkey=hotkey)
            aw = self.client.submit_call(call, wallet, wait_for_finalization=False)
        await self._submit(f"register on netuid {netuid}", aw)

    async def _register_pow(self, wallet: Wallet, netuid: int, hotkey: str, timeout: float) -> None:
        what = f"proof-of-work registration on netuid {netuid}"
        allowed = await self._read(
            "read pow allowed",
            lambda: self.client.query(_pair(st.SubtensorModule.NetworkPowRegistrationAllowed), [netuid]),
        )
        if not allowed:
            raise ChainError(
                what, reason="the subnet owner has not enabled PoW; register with a burn"
            )
        mine = self.client.mine_pow_registration(
            netuid, hotkey, coldkey_address(wallet), workers=2, max_seconds=timeout
        )
        try:
            intent = await self._call(what, mine, timeout=timeout + self.timeout)
        except (ValueError, RuntimeError) as err:  # the SDK's miner: refused or found nothing
            raise ChainError(what, reason=str(err)) from err
        await self._submit(what, self.client.execute(intent, wallet, wait_for_finalization=False))

    async def _mev_shield_active(self) -> bool:
        if self.is_devnet:
            return False  # the devnet has no MevShield pallet
        try:
            key = await self._read(
                "read MevShield.NextKey", lambda: self.client.query(("MevShield", "NextKey"))
            )
        except ChainConnectionError:
            raise
        except ChainError:
            return False  # a chain without the MevShield pallet
        return bool(key)

    async def _wait_for_uid(self, netuid: int, hotkey: str) -> int:
        """The uid after a successful registration (a shielded call may land a block later)."""
        uid = await poll_until(
            lambda: self.uid_of(netuid, hotkey), lambda found: found is not None,
            timeout=self.write_timeout, interval=self.poll_interval,
            on_timeout=lambda _: ChainTimeoutError(
                f"registration of {hotkey} on netuid {netuid} not visible "
                f"after {self.write_timeout:g}s"
            ),
        )
        assert uid is not None  # poll_until returns only a value ``done`` accepted
        return uid

    async def serve(self, wallet: Wallet, netuid: int, ip: str, port: int) -> None:
        """Publish the hotkey's endpoint ip:port on the subnet (no-op when already published).

        Skipping an unchanged endpoint keeps restarts clear of the chain's serving rate limit.
        """
        hotkey = hotkey_address(wallet)
        mg = await self._registered_view(netuid, hotkey)
        position = mg.hotkeys.index(hotkey)  # present: _registered_view checked it
        if mg.axons[position] == f"{ip}:{port}":
            return
        intent = bt.ServeAxon(netuid=netuid, ip=ip, port=port)
        await self._submit(
            f"serve on netuid {netuid}",
            self.client.execute(intent, wallet, wait_for_finalization=False),
        )

    async def commit(self, wallet: Wallet, netuid: int, data: str) -> None:
        """Publish ``data`` as the hotkey's commitment (no-op when it is already the commitment).

        Read it back via ``metagraph(netuid).commitments[hotkey]``; an unchanged commitment
        is not re-sent (each commit spends the hotkey's per-epoch commitment space).
        """
        fields = commitment_fields(data)
        hotkey = hotkey_address(wallet)
        mg = await self._registered_view(netuid, hotkey)
        if mg.commitments.get(hotkey) == data:
            return
        call = bt.calls.Commitments.set_commitment(netuid=netuid, info={"fields": fields})
        await self._submit(
            f"commit on netuid {netuid}",
            self.client.submit_call(call, wallet, signer="hotkey", wait_for_finalization=False),
        )

    async def _registered_view(self, netuid: int, hotkey: str) -> Metagraph:
        """The metagraph, after checking that ``hotkey`` holds a uid on it."""
        await self._require_uid(netuid, hotkey)
        mg = await self.metagraph(netuid)
        if mg.uid_of(hotkey) is None:  # deregistered between the two reads
            raise NotRegisteredError(f"hotkey {hotkey} is not registered on netuid {netuid}")
        return mg

    async def set_weights(self, wallet: Wallet, netuid: int, weights: dict[int, float]) -> None:
        """Set normalized weights (commit-reveal when the subnet enables it).

        Raises ``RateLimitedError`` (with ``blocks`` to wait) instead of sending an
        extrinsic the chain would refuse.
        """
        normalized = normalize_weights(weights)
        uid = await self._require_uid(netuid, hotkey_address(wallet))
        await self._check_weights_rate_limit(netuid, uid)
        intent = bt.SetWeights(netuid=netuid, weights=normalized)
        await self._submit(
            f"set weights on netuid {netuid}",
            self.client.execute(intent, wallet, wait_for_finalization=False),
        )

    async def _check_weights_rate_limit(self, netuid: int, uid: int) -> None:
        block = await self.block()
        limit, last = await self._read(
            "read weights rate limit",
            lambda: asyncio.gather(
                self.client.query(_pair(st.SubtensorModule.WeightsSetRateLimit), [netuid], block=block),
                self.client.query(_pair(st.SubtensorModule.LastUpdate), [netuid], block=block),
            ),
        )
        last_update = int(last[uid]) if isinstance(last, list | tuple) and uid < len(last) else 0
        wait = rate_limit_remaining(block, last_update, int(limit or 0))
        if wait:
            raise RateLimitedError(
                f"weights on netuid {netuid} were set at block {last_update}; wait {wait} more blocks",
                blocks=wait,
                reason=f"weights_rate_limit is {int(limit)} blocks",
            )

    async def add_stake(self, wallet: Wallet, netuid: int, amount_tao: float) -> None:
        """Stake ``amount_tao`` from the wallet's coldkey onto its own hotkey on ``netuid``."""
        if not amount_tao > 0:
            raise ValueError(f"stake amount must be positive, got {amount_tao}")
        hotkey = hotkey_address(wallet)
        await self._require_subnet(netuid)
        await self._require_uid(netuid, hotkey)
        what = f"add stake on netuid {netuid}"
        if self.is_devnet:
            # The devnet has no AMM pool to quote a slippage limit against: plain add_stake.
            rao = int(round(amount_tao * 1e9))
            call = bt.calls.SubtensorModule.add_stake(
                hotkey=hotkey, netuid=netuid, amount_staked=rao
            )
            aw = self.client.submit_call(call, wallet, wait_for_finalization=False)
        else:
            intent = bt.AddStake(hotkey_ss58=hotkey, netuid=netuid, amount_tao=bt.tao(amount_tao))
            aw = self.client.execute(intent, wallet, wait_for_finalization=False)
        await self._submit(what, aw)


# --- construction and conversion helpers --------------------------------------------

_HYPERPARAM_ITEMS: dict[str, Any] = {
    "tempo": st.SubtensorModule.Tempo,
    "weights_rate_limit": st.SubtensorModule.WeightsSetRateLimit,
    "commit_reveal_enabled": st.SubtensorModule.CommitRevealWeightsEnabled,
    "min_allowed_weights": st.SubtensorModule.MinAllowedWeights,
    "max_weights_limit": st.SubtensorModule.MaxWeightsLimit,
    "activity_cutoff": st.SubtensorModule.ActivityCutoff,
    "immunity_period": st.SubtensorModule.ImmunityPeriod,
    "max_allowed_uids": st.SubtensorModule.MaxAllowedUids,
    "max_allowed_validators": st.SubtensorModule.MaxAllowedValidators,
    "burn": st.SubtensorModule.Burn,
    "pow_registration_allowed": st.SubtensorModule.NetworkPowRegistrationAllowed,
}


def _build_client(url: str, timeout: float) -> bt.Client:
    if is_devnet(url):
        from chain.devnet.substrate import DevnetSubstrate

        host, port = _devnet_host_port(url)
        # The label keys the SDK's token-symbol cache; keep it per devnet endpoint.
        return bt.Client(
            f"ws://{host}:{port}", substrate=DevnetSubstrate(devnet_http_url(url), timeout=timeout)
        )
    return bt.Client(url)  # the SDK's RPC backend, with its default fallback pools


def _connect_error(url: str, err: BaseException) -> ChainConnectionError:
    reason = str(err) or type(err).__name__
    if is_devnet(url):
        return ChainConnectionError(
            f"no devnet at {url} — start one with `swarmtrain devnet`", reason=reason
        )
    return ChainConnectionError(f"cannot connect to {url}", reason=reason)


async def _is_devnet_endpoint(url: str) -> bool:
    """Does ``url`` (ws:// or wss://) answer like a swarmtrain devnet (``GET /health``)?"""
    import aiohttp

    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        return False
    health = f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}/health"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3.0)) as session, \
                session.get(health) as resp:
            doc = await resp.json(content_type=None) if resp.status == 200 else {}
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        return False
    return isinstance(doc, dict) and "genesis_hash" in doc and "block" in doc


async def _quiet_close(client: bt.Client) -> None:
    """Close a client that may be half-open; a failing close must not hide the real error."""
    try:
        await asyncio.wait_for(client.close(), 5.0)
    except (asyncio.TimeoutError, *TRANSPORT_ERRORS, bt.BittensorError) as err:
        _log_close_failure(err)


def _pair(item: st.Item) -> tuple[str, str]:
    """A generated storage descriptor as the ``(pallet, item)`` pair ``Client.query`` is typed to
    take (the generated ``Item`` carries a third, metadata-only field; ``query`` reads two)."""
    return (item.container, item.name)


def _log_close_failure(err: BaseException) -> None:
    import logging

    logging.getLogger("swarmtrain.chain").debug("closing the chain client failed: error=%r", err)
