"""Domain errors of the chain facade; each carries the chain's own reason.

Callers catch these instead of the SDK's exceptions, e.g.::

    try:
        await chain.set_weights(wallet, 1, {0: 1.0})
    except RateLimitedError as err:
        await chain.wait_for_block(await chain.block() + (err.blocks or 1), timeout=60)
"""

from __future__ import annotations

import asyncio
import re

import aiohttp
import bittensor as bt
from bittensor.keyfiles import KeyfileError

_RETRY_BLOCKS = re.compile(r"retry in ~?(\d+) blocks", re.IGNORECASE)


class ChainError(Exception):
    """A chain call failed; ``reason`` is the chain's (or SDK's) explanation.

    Example: ``ChainError("register failed", reason="TooManyRegistrationsThisBlock")``.
    """

    def __init__(self, message: str, *, reason: str | None = None, name: str | None = None):
        self.message = message
        self.reason = reason
        self.name = name  # the chain's error name (e.g. "HotKeyNotRegisteredInSubNet") when known
        super().__init__(f"{message}: {reason}" if reason else message)


class NotRegisteredError(ChainError):
    """The hotkey holds no uid on the subnet (register it first)."""


class RateLimitedError(ChainError):
    """The chain would refuse the call now; ``blocks`` is how many blocks to wait (None: unknown)."""

    def __init__(self, message: str, *, blocks: int | None = None, reason: str | None = None):
        super().__init__(message, reason=reason)
        self.blocks = blocks


class ChainTimeoutError(ChainError):
    """No answer (or the awaited block) within the given timeout."""


class ChainConnectionError(ChainError):
    """The chain endpoint could not be reached (e.g. no devnet running)."""


class UnknownNetworkError(ChainError, ValueError):
    """A network name that is neither a known preset nor a devnet:// / ws(s):// URL."""


class WalletError(ChainError):
    """A wallet could not be loaded or created."""


class WalletNotFoundError(WalletError):
    """The wallet's key files are missing."""


class WalletExistsError(WalletError):
    """Refusing to overwrite an existing wallet (pass overwrite=True)."""


# Transport failures that mean "could not reach the endpoint" (vs. the chain saying no).
TRANSPORT_ERRORS = (OSError, aiohttp.ClientError, bt.RpcConnectionError, bt.ConnectionNotReady)


def domain_error(err: BaseException, what: str) -> ChainError:
    """Map an SDK or transport exception to our domain error, keeping the chain's reason."""
    if isinstance(err, ChainError):
        return err
    if isinstance(err, asyncio.TimeoutError | TimeoutError):
        return ChainTimeoutError(f"{what} timed out", reason=str(err) or None)
    if isinstance(err, bt.ChainError):
        return _from_sdk_chain_error(err, what)
    if isinstance(err, KeyfileError):
        return WalletError(f"{what}: cannot unlock the signing key", reason=str(err))
    if isinstance(err, TRANSPORT_ERRORS):
        return ChainConnectionError(
            f"{what}: chain unreachable", reason=str(err) or type(err).__name__
        )
    return ChainError(f"{what} failed", reason=str(err) or type(err).__name__)


def _from_sdk_chain_error(err: bt.ChainError, what: str) -> ChainError:
    reason = err.message if not err.name else f"{err.name}: {err.message}"
    if err.code == bt.ErrorCode.NOT_REGISTERED:
        return NotRegisteredError(f"{what}: hotkey not registered", reason=reason)
    if err.code == bt.ErrorCode.RATE_LIMITED:
        match = _RETRY_BLOCKS.search(err.message)
        blocks = int(match.group(1)) if match else None
        return RateLimitedError(f"{what}: rate limited", blocks=blocks, reason=reason)
    return ChainError(f"{what} failed", reason=reason, name=err.name)
