"""Waiting with a deadline: one backoff policy, one pacing object, one retry and one poll loop.

Every loop that tries something again (a chain read after a dropped connection, an HTTP
request to a validator, "has block N come yet?") paces itself with a ``Waiter``: the pause
after try ``n`` is ``Backoff.delay(n)`` — ``first · factor^(n-1)``, capped at ``cap``, less a
random fraction up to ``jitter`` (so many nodes that failed together do not retry together)
— and there is no next try when it would start after the deadline or past ``max_attempts``.
A fixed polling interval is ``Backoff.every(seconds)``.

An outage of unknown length (the chain or a validator down for minutes) is waited out
without a deadline by ``wait_out``: capped backoff (``OUTAGE_BACKOFF``) and an ``Outage``
that logs one status line when the trouble starts, one per minute while it lasts
("waiting for the chain at URL since 11:05:03 UTC (120 s): reason"), and one when it ends.

It lives in ``protocol`` because that is the bottom layer: the chain facade, the node's
fetch client, the miner's submitter and the local network all wait through it.

Example:
    >>> block = await poll_until(chain.block, lambda b: b >= 100, timeout=60, interval=0.5,
    ...                          on_timeout=lambda b: TimeoutError(f"chain at {b}"))
    >>> status = await retry(send, timeout=20, backoff=TRANSIENT_BACKOFF, again=lambda s: s >= 500)
    >>> outage = Outage("the chain", chain.url, log)
    >>> block = await wait_out(chain.block, retry_on=(ChainConnectionError,), outage=outage)
    >>> waiter = Waiter(30, Backoff.every(0.1))        # a hand-paced loop, sync or async
    >>> while not ready():
    ...     if not waiter.pause_sync():
    ...         raise TimeoutError("not ready within 30 s")
"""

from __future__ import annotations

import asyncio
import logging
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
# The policy while waiting out an outage of any length: no try is more than 10 s after the
# endpoint is back (plus the try's own timeout).
OUTAGE_BACKOFF = Backoff(first=1.0, factor=2.0, cap=10.0, jitter=0.2)
STATUS_EVERY_S = 60.0  # one "still waiting" line per minute of an outage


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


class Outage:
    """One thing that does not answer, as the operator reads it: a line when it starts, one
    every ``every_s`` seconds while it lasts, one when it is back — never one per try.

    ``failed(reason)`` after each failed try (returns True when it logged), ``recovered()``
    after a success. ``since`` is the wall-clock start (None while there is no outage).
    ``quiet_s``: waiting that long is normal (e.g. for an aggregate): the first line comes
    only after it, and a recovery before it says nothing.

    Example:
        >>> outage = Outage("the chain", "devnet://127.0.0.1:9946", log, hint="is the devnet running?")
        >>> outage.failed("connection refused")   # logs "waiting for the chain at ... since ..."
        >>> outage.recovered()                    # logs "the chain at ... is back after 42 s"
    """

    def __init__(
        self, what: str, where: str, log: logging.Logger, *, every_s: float = STATUS_EVERY_S, hint: str = "",
        quiet_s: float = 0.0, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
    ) -> None:
        self.what, self.where, self.log, self.every_s, self.hint = what, where, log, every_s, hint
        self.quiet_s, self.clock, self.wall = quiet_s, clock, wall
        self.since: float | None = None  # wall clock at the first failure
        self.started = 0.0  # monotonic clock at the first failure
        self.last_line: float | None = None  # monotonic clock of the last status line
        self.failures = 0

    @property
    def down(self) -> bool:
        return self.since is not None

    def elapsed(self) -> float:
        return self.clock() - self.started if self.down else 0.0

    def failed(self, reason: object) -> bool:
        """Count a failed try; log the status line when the outage starts or a minute has passed."""
        now = self.clock()
        self.failures += 1
        if self.since is None:
            self.since, self.started = self.wall(), now
        if now - self.started < self.quiet_s:
            return False
        if self.last_line is not None and now - self.last_line < self.every_s:
            return False
        self.last_line = now
        self.log.warning(self.status(reason))
        return True

    def status(self, reason: object) -> str:
        since = time.strftime("%H:%M:%S", time.gmtime(self.since or self.wall()))
        hint = f" ({self.hint})" if self.hint else ""
        return (f"waiting for {self.what} at {self.where} since {since} UTC ({self.elapsed():.0f} s, "
                f"{self.failures} tries): {reason}{hint}")

    def recovered(self) -> None:
        """The endpoint answered: one line when it had been down, and reset."""
        if self.last_line is not None:
            self.log.warning(f"{self.what} at {self.where} is back after {self.elapsed():.0f} s "
                             f"({self.failures} failed tries)")
        self.since, self.failures, self.last_line = None, 0, None


async def wait_out(
    call: Callable[[], Awaitable[T]], *, retry_on: tuple[type[BaseException], ...], outage: Outage,
    backoff: Backoff = OUTAGE_BACKOFF,
) -> T:
    """Call ``call`` until it succeeds, however long that takes (no deadline: an outage of
    any length is waited out). Failures listed in ``retry_on`` go to ``outage`` (a status line
    a minute) and pause ``backoff`` (capped); any other exception propagates at once.
    Cancel the task to stop waiting.
    """
    tries = 0
    while True:
        try:
            result = await call()
        except retry_on as exc:
            tries += 1
            outage.failed(exc)
            await asyncio.sleep(backoff.delay(tries))
            continue
        outage.recovered()
        return result
