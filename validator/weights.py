"""Setting weights on chain: one attempt, what a refusal means, and what the operator does.

The validator decides *when* (``validator.service.should_set_weights``: once per tempo) and
*what* (``validator.scores.ScoreBook.weights``); this module makes the call and turns the
chain's answers into the block the next attempt counts from and a log line naming the fix.

Example:
    >>> last = await set_weights_once(chain, wallet, 1, {3: 0.6, 4: 0.4}, block=120, tempo=100,
    ...                               permit_hint=lambda: permit_hint(metagraph, hotkey, 1))
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from chain.errors import ChainError, RateLimitedError
from chain.types import Metagraph
from chain.wallets import Wallet
from node.logs import progress_line

log = logging.getLogger("swarmtrain.validator")


class WeightsChain(Protocol):
    """The part of ``chain.client.Chain`` that sets weights."""

    async def set_weights(self, wallet: Wallet, netuid: int, weights: dict[int, float]) -> None: ...


async def set_weights_once(chain: WeightsChain, wallet: Wallet, netuid: int, weights: dict[int, float], *,
                           block: int, tempo: int, permit_hint: Callable[[], str]) -> int:
    """Set ``weights``; returns the block the next attempt counts from: ``block``, or earlier
    after a rate limit (so the retry comes as soon as the chain allows, not a tempo later).
    Chain errors are logged, never raised: the next tempo tries again."""
    try:
        await chain.set_weights(wallet, netuid, weights)
        log.info(progress_line("set weights", block=block, weights=",".join(f"{u}:{w:.4f}" for u, w in weights.items())))
    except RateLimitedError as exc:
        log.info(progress_line("weights rate-limited", reason=exc))
        return block - tempo + (exc.blocks or 1)
    except ChainError as exc:
        if "NoValidatorPermit" in str(exc):
            log.error(progress_line("setting weights failed", reason=permit_hint()))
        else:
            log.warning(progress_line("setting weights failed, retrying next tempo", reason=exc))
    return block


def has_no_stake(metagraph: Metagraph | None, hotkey: str) -> bool:
    """No permit and no stake: weights will be refused until the operator stakes."""
    uid = metagraph.uid_of(hotkey) if metagraph is not None else None
    if metagraph is None or uid is None:
        return False
    i = metagraph.uids.index(uid)
    return not bool(metagraph.validator_permit[i]) and float(metagraph.stake[i]) <= 0.0


def permit_hint(metagraph: Metagraph | None, hotkey: str, netuid: int) -> str:
    """Why ``hotkey`` has no validator permit, and what to do about it (in TAO)."""
    uid = metagraph.uid_of(hotkey) if metagraph is not None else None
    stake = float(metagraph.stake[metagraph.uids.index(uid)]) if metagraph is not None and uid is not None else 0.0
    return (f"hotkey {hotkey} (uid {uid}) holds no validator permit on netuid {netuid} "
            f"(stake τ{stake:.4f}): permits go to the highest-stake hotkeys at each epoch; stake on it with "
            f"`swarmtrain stake add --netuid {netuid} --amount TAO` and this validator's "
            "--wallet.name/--wallet.hotkey/--subtensor.network, then wait for the next epoch "
            "(retrying every tempo)")
