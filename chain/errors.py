"""Domain errors of the chain facade; each carries the chain's own reason.

Callers catch these instead of the SDK's exceptions, e.g.::

    try:
        await chain.set_weights(wallet, 1, {0: 1.0})
    except RateLimitedError as err:
        await chain.wait_for_block(await chain.block() + (err.blocks or 1), timeout=60)
"""

from __future__ import annotations


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
