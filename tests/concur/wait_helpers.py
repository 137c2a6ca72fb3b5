"""Helpers shared by the wait-strategy and stream tests (not a test module)."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel


class InFlight:
    """Counts calls running at once, and the most seen."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.started = 0
        self.cancelled = 0

    async def run(self, value: Any, gate: anyio.Event | None = None) -> Any:
        self.now += 1
        self.started += 1
        self.peak = max(self.peak, self.now)
        try:
            if gate is None:
                await anyio.lowlevel.checkpoint()
                await anyio.lowlevel.checkpoint()
            else:
                await gate.wait()
            return value
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.now -= 1


async def value(x: Any) -> Any:
    await anyio.lowlevel.checkpoint()
    return x


async def fail(exc: BaseException) -> Any:
    await anyio.lowlevel.checkpoint()
    raise exc


def assert_rate(starts: list[float], per_second: float, burst: int) -> None:
    """Over any interval of D seconds at most burst + per_second * D starts happened."""
    starts = sorted(starts)
    slack = 1e-3  # the gap between the limiter's grant and the job reading the clock
    for i in range(len(starts)):
        for j in range(i + 1, len(starts)):
            assert starts[j] - starts[i] >= (j - i + 1 - burst) / per_second - slack, (i, j)
