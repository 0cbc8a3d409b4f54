"""Backoff delays, the Waiter's deadline, retry and poll_until."""

import asyncio

import pytest

from protocol.retry import Backoff, Waiter, poll_until, retry


def test_backoff_grows_caps_and_jitters_down():
    b = Backoff(first=1.0, factor=2.0, cap=5.0, jitter=0.0)
    assert [b.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert b.delay(10_000) == 5.0  # no overflow
    jittered = Backoff(first=1.0, factor=2.0, cap=5.0, jitter=0.5)
    assert jittered.delay(2, rng=lambda: 0.0) == 2.0 and jittered.delay(2, rng=lambda: 0.999) == pytest.approx(1.001)
    assert Backoff.every(0.3).delay(7) == 0.3


@pytest.mark.parametrize("kwargs", [{"first": -1}, {"factor": 0.5}, {"jitter": 1.0}])
def test_bad_backoff_is_refused(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_waiter_stops_at_the_deadline_and_the_attempt_limit():
    now = [0.0]
    waiter = Waiter(10.0, Backoff(first=4.0, factor=1.0, cap=4.0, jitter=0.0), clock=lambda: now[0])
    assert waiter.next_delay() == 4.0
    now[0] = 7.0
    assert waiter.next_delay() is None  # 7 + 4 > 10
    limited = Waiter(100.0, Backoff.every(0.0), max_attempts=3)
    assert [limited.next_delay() for _ in range(3)] == [0.0, 0.0, None]


async def test_retry_retries_listed_errors_then_succeeds():
    calls = []

    async def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("dropped")
        return "ok"

    assert await retry(flaky, timeout=5, backoff=Backoff.every(0.0), retry_on=(ConnectionError,)) == "ok"
    assert len(calls) == 3


async def test_retry_gives_up_with_the_last_error_and_passes_others_at_once():
    async def down():
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await retry(down, timeout=0.05, backoff=Backoff.every(0.01), retry_on=(ConnectionError,))

    async def bug():
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await retry(bug, timeout=5, retry_on=(ConnectionError,))


async def test_retry_on_values_returns_the_last_one_when_attempts_run_out():
    statuses = iter([503, 503, 503, 200])

    async def post():
        return next(statuses)

    got = await retry(post, timeout=5, backoff=Backoff.every(0.0), again=lambda s: s >= 500, max_attempts=2)
    assert got == 503


async def test_poll_until_returns_the_value_or_raises_the_callers_error():
    seen = iter(range(100))

    async def block():
        return next(seen)

    assert await poll_until(block, lambda b: b >= 3, timeout=5, interval=0.0, on_timeout=RuntimeError) == 3

    async def stuck():
        return 7

    with pytest.raises(TimeoutError, match="at 7"):
        await poll_until(stuck, lambda b: b >= 9, timeout=0.05, interval=0.01,
                         on_timeout=lambda b: TimeoutError(f"chain at {b}"))


async def test_cancellation_is_not_swallowed():
    async def never():
        return False

    task = asyncio.create_task(poll_until(never, bool, timeout=60, interval=0.01, on_timeout=RuntimeError))
    await asyncio.sleep(0.03)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_poll_until_without_on_timeout_returns_the_last_value():
    async def never():
        return 0

    assert await poll_until(never, bool, timeout=0.03, interval=0.01, on_timeout=None) == 0
