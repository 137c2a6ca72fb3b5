"""The GCRA rate limiter behind ``max_per_second`` and ``streams.throttle``."""

from __future__ import annotations

import anyio
import pytest
from wait_helpers import assert_rate

from concur._ratelimit import RateLimiter


async def test_burst_is_granted_without_waiting() -> None:
    """The first *burst* acquisitions return without a checkpoint."""
    limiter = RateLimiter(1, burst=3)
    with anyio.CancelScope() as scope:
        scope.cancel()
        for _ in range(3):
            await limiter.acquire()  # a checkpoint would raise the cancellation here
    assert not scope.cancelled_caught


async def test_grants_follow_the_bucket_for_concurrent_waiters() -> None:
    """Tasks sharing a limiter never start faster than the bucket allows."""
    limiter = RateLimiter(200, burst=2)
    grants: list[float] = []

    async def waiter() -> None:
        for _ in range(3):
            await limiter.acquire()
            grants.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(waiter)
    assert len(grants) == 12
    assert_rate(grants, 200, 2)


async def test_a_cancelled_wait_takes_no_token() -> None:
    """A waiter cancelled while it waits leaves the next token for someone else."""
    limiter = RateLimiter(20, burst=1)
    await limiter.acquire()
    tat = limiter._tat  # the theoretical arrival time after one grant
    with anyio.move_on_after(0) as scope:
        await limiter.acquire()
    assert scope.cancelled_caught
    assert limiter._tat == tat


@pytest.mark.parametrize(
    ("per_second", "burst", "error", "word"),
    [
        (0, 1, ValueError, "max_per_second"),
        (float("inf"), 1, ValueError, "max_per_second"),
        (float("nan"), 1, ValueError, "max_per_second"),
        ("1", 1, TypeError, "max_per_second"),
        (1, 0, ValueError, "burst"),
        (1, 1.5, TypeError, "burst"),
    ],
)
def test_bad_rates_are_refused(per_second: object, burst: object, error: type, word: str) -> None:
    """Non-positive or non-finite rates and bursts below one are refused, by name."""
    with pytest.raises(error, match=word):
        RateLimiter(per_second, burst)  # type: ignore[arg-type]
