"""The rate limiter shared by ``map_async``, ``amap`` and ``streams.throttle``.

A token bucket written as GCRA (the generic cell rate algorithm). With a rate of *r* per
second and a burst of *b*, let ``T = 1/r`` and ``tau = (b - 1) * T``; the limiter keeps
one number, the *theoretical arrival time* ``tat`` (initially minus infinity). A start at
clock time *t* (``anyio.current_time()``) is granted when ``t >= tat - tau``, and then
``tat = max(tat, t) + T``; otherwise the caller sleeps until ``tat - tau`` and tries
again. So over any interval of *D* seconds at most ``b + r * D`` starts are granted: the
``k``-th grant after a grant at time *t0* comes no earlier than ``t0 + (k + 1 - b) / r``.
"""

from __future__ import annotations

import math
from typing import final

import anyio

from ._core import check_int, check_number

__all__ = ["RateLimiter", "check_rate"]


def check_rate(per_second: object, burst: object, where: str = "max_per_second") -> None:
    """Validate a rate and a burst; raise ``TypeError``/``ValueError`` naming the argument."""
    check_number(per_second, where, strict=True, finite=True, unit="calls per second")
    check_int(burst, "burst")


@final
class RateLimiter:
    """A GCRA token bucket: capacity *burst*, refilled at *per_second* tokens a second.

    Safe to share between tasks of one event loop. A waiter that is cancelled takes no
    token. Waiters are not served in FIFO order: whoever runs first after the bucket
    refills gets the token.
    """

    __slots__ = ("_interval", "_tat", "_tolerance")

    def __init__(self, per_second: float, burst: int = 1) -> None:
        check_rate(per_second, burst)
        self._interval = 1.0 / per_second
        self._tolerance = (burst - 1) * self._interval
        self._tat = -math.inf

    async def acquire(self) -> None:
        """Wait until a start is allowed, and take it.

        It returns without a checkpoint when a token is available at once.

        Cancellation: a cancelled wait takes no token.
        """
        while True:
            now = anyio.current_time()
            tat = self._tat
            allowed = tat - self._tolerance
            if now >= allowed:
                self._tat = (tat if tat > now else now) + self._interval
                return
            await anyio.sleep(allowed - now)
