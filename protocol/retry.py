"""Waiting with a deadline: one backoff policy, one pacing object, one retry and one poll loop.

Every loop that tries something again (a chain read after a dropped connection, an HTTP
request to a validator, "has block N come yet?") paces itself with a ``Waiter``: the pause
after try ``n`` is ``Backoff.delay(n)`` — ``first · factor^(n-1)``, capped at ``cap``, less a
random fraction up to ``jitter`` (so many nodes that failed together do not retry together)
— and there is no next try when it would start after the deadline or past ``max_attempts``.
A fixed polling interval is ``Backoff.every(seconds)``.

It lives in ``protocol`` because that is the bottom layer: the chain facade, the node's
fetch client, the miner's submitter and the local network all wait through it.

Example:
    >>> block = await poll_until(chain.block, lambda b: b >= 100, timeout=60, interval=0.5,
    ...                          on_timeout=lambda b: TimeoutError(f"chain at {b}"))
    >>> status = await retry(send, timeout=20, backoff=TRANSIENT_BACKOFF, again=lambda s: s >= 500)
    >>> waiter = Waiter(30, Backoff.every(0.1))        # a hand-paced loop, sync or async
    >>> while not ready():
    ...     if not waiter.pause_sync():
    ...         raise TimeoutError("not ready within 30 s")
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

_MAX_DOUBLINGS = 64  # beyond this every delay is the cap anyway (and factor**n stays finite)


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter: the pause after the n-th failed try.

    Example:
        >>> [Backoff(first=1, factor=2, cap=5, jitter=0).delay(n) for n in (1, 2, 3, 4)]
        [1.0, 2.0, 4.0, 5.0]
    """

    first: float = 0.5  # seconds after the first try
    factor: float = 2.0  # growth per try (1.0: a fixed interval)
    cap: float = 30.0  # no pause is longer
    jitter: float = 0.2  # each pause is shortened by a random fraction in [0, jitter)

    def __post_init__(self) -> None:
        if self.first < 0 or self.cap < 0 or self.factor < 1.0 or not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"bad backoff {self}: need first, cap >= 0, factor >= 1, 0 <= jitter < 1")

    @classmethod
    def every(cls, seconds: float) -> Backoff:
        """A fixed polling interval (no growth, no jitter)."""
        return cls(first=seconds, factor=1.0, cap=seconds, jitter=0.0)

    def delay(self, tries: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to pause after ``tries`` tries (1-based)."""
        base = min(self.cap, self.first * self.factor ** min(max(tries - 1, 0), _MAX_DOUBLINGS))
        return base * (1.0 - self.jitter * rng())


# The policy for transient chain and HTTP failures (connection drops, 5xx, 429).
TRANSIENT_BACKOFF = Backoff()


class Waiter:
    """Paces the tries of one operation until ``timeout`` seconds from now.

    Call ``pause()`` (or ``pause_sync()``) after each try that did not succeed: it sleeps
    the backoff delay and returns True, or returns False at once when the next try would
    start after the deadline or exceed ``max_attempts`` (then give up).
    """

    def __init__(
        self, timeout: float, backoff: Backoff = TRANSIENT_BACKOFF, *, max_attempts: int | None = None,
        clock: Callable[[], float] = time.monotonic, rng: Callable[[], float] = random.random,
    ) -> None:
        self.backoff, self.max_attempts, self.clock, self.rng = backoff, max_attempts, clock, rng
        self.deadline = clock() + timeout
        self.tries = 0

    def next_delay(self) -> float | None:
        """Count the try that just ended; the pause before the next one, or None (give up)."""
        self.tries += 1
        if self.max_attempts is not None and self.tries >= self.max_attempts:
            return None
        delay = self.backoff.delay(self.tries, self.rng)
        return delay if self.clock() + delay <= self.deadline else None

    async def pause(self) -> bool:
        delay = self.next_delay()
        if delay is None:
            return False
        await asyncio.sleep(delay)
        return True

    def pause_sync(self) -> bool:
        """``pause`` for code outside an event loop (test helpers, process supervision)."""
        delay = self.next_delay()
        if delay is None:
            return False
        time.sleep(delay)
        return True


async def retry(
    call: Callable[[], Awaitable[T]], *, timeout: float, backoff: Backoff = TRANSIENT_BACKOFF,
    retry_on: tuple[type[BaseException], ...] = (), again: Callable[[T], bool] | None = None,
    max_attempts: int | None = None,
) -> T:
    """Call ``call`` until it succeeds or the ``Waiter`` gives up.

    A try fails when it raises one of ``retry_on`` or returns a value for which ``again``
    is true. When the tries run out, the last exception propagates or the last value is
    returned; any other exception propagates at once.
    """
    waiter = Waiter(timeout, backoff, max_attempts=max_attempts)
    while True:
        try:
            result = await call()
        except retry_on:
            if not await waiter.pause():
                raise
            continue
        if again is None or not again(result) or not await waiter.pause():
            return result


async def poll_until(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, timeout: float, interval: float,
    on_timeout: Callable[[T], BaseException] | None,
) -> T:
    """Call ``probe`` every ``interval`` s until ``done(value)``; returns that value.

    When ``timeout`` s pass first, raises ``on_timeout(last value)`` (with None: returns the
    last value, for a caller that can go on without). Exceptions of ``probe`` propagate at
    once (retry them inside ``probe`` if they are transient).
    """
    waiter = Waiter(timeout, Backoff.every(interval))
    while not done(value := await probe()):
        if not await waiter.pause():
            if on_timeout is None:
                return value
            raise on_timeout(value)
    return value
