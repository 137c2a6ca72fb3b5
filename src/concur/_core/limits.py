"""Limiter tokens taken for a call, written once: the take-or-nothing wait, the give-back on
failure, and the limiter that never waits."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:  # at run time anyio imports these on first use
    import anyio.lowlevel

__all__ = ["give_back_on_error", "take_token", "unlimited"]


async def take_token(
    limiter: anyio.CapacityLimiter,
    borrower: object,
    undo: Callable[[], object] | None = None,
    checkpoint: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Take a token of *limiter* on behalf of *borrower*, or none at all.

    A free token is taken at once, then *checkpoint* (default:
    :func:`anyio.lowlevel.checkpoint`) runs (a cancellation point, so that a
    cancelled caller never starts its call). If the wait or the checkpoint raises (a
    cancellation), no token is held any more, *undo* runs, and the exception propagates.
    """
    try:
        limiter.acquire_on_behalf_of_nowait(borrower)
    except anyio.WouldBlock:
        try:
            await limiter.acquire_on_behalf_of(borrower)
        except BaseException:
            if undo is not None:
                undo()
            raise
        return
    with give_back_on_error(limiter, borrower, undo):
        await (anyio.lowlevel.checkpoint if checkpoint is None else checkpoint)()


@contextlib.contextmanager
def give_back_on_error(
    limiter: anyio.CapacityLimiter, borrower: object, undo: Callable[[], object] | None = None
) -> Generator[None]:
    """Give *borrower*'s token back (and run *undo*) if the block raises; keep it otherwise."""
    try:
        yield
    except BaseException:
        limiter.release_on_behalf_of(borrower)
        if undo is not None:
            undo()
        raise


_unlimited: anyio.lowlevel.RunVar[anyio.CapacityLimiter] | None = None


def unlimited() -> anyio.CapacityLimiter:
    """This event-loop run's limiter that never waits: for a call whose token that counts
    is held elsewhere (by concur itself, or by a map worker), so that no second cap
    applies."""
    global _unlimited
    if _unlimited is None:  # made on first use: anyio.lowlevel is not imported before
        _unlimited = anyio.lowlevel.RunVar("concur.unlimited")
    try:
        return _unlimited.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(math.inf)
        _unlimited.set(limiter)
        return limiter
