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


class Marker(Exception):
    """The failure a test's job raises on purpose."""


async def fail_when_cancelled() -> None:
    """Wait until cancelled, then fail with ``Marker`` instead of the cancellation."""
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        raise Marker("failed while being cancelled") from None


async def cancel_then_fail(scope: anyio.CancelScope) -> None:
    """Cancel an enclosing *scope*, then fail at once: a failure that meets a cancellation."""
    scope.cancel()
    raise Marker("failed as the enclosing scope was cancelled")


def outcome_of(main: Any, backend: str) -> tuple[str, BaseException | None]:
    """Run *main* on *backend*; tell whether it returned what it caught, or what escaped.

    For ``KeyboardInterrupt`` tests: one that escaped the event loop would otherwise end
    the pytest session.
    """
    try:
        caught = anyio.run(main, backend=backend)
    except BaseException as exc:
        return "escaped", exc
    return "caught", caught
