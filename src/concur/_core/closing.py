"""Closing what a helper leaves behind, written once: an input's bounded ``aclose()``, and
the block that owns a task group (``amap``, the stream operators).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final

import anyio

from .groups import CallGroup

__all__ = ["CLOSE_TIMEOUT", "GroupBlock", "aclose_bounded"]

#: the seconds an input's ``aclose()`` may take when a helper closes it
CLOSE_TIMEOUT: Final = 5.0


async def aclose_bounded(it: object) -> None:
    """``aclose()`` *it* if it has that method: shielded, for at most :data:`CLOSE_TIMEOUT`.

    Shielded, so that a helper left by a cancellation still closes its input; bounded, so
    that an input whose ``aclose()`` hangs cannot hang the helper (it is abandoned then).
    """
    aclose: Callable[[], Awaitable[object]] | None = getattr(it, "aclose", None)
    if aclose is not None:
        with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await aclose()


class GroupBlock:
    """The base of an async context manager whose block owns a :class:`CallGroup`.

    The subclass's ``__aenter__`` opens the group with :meth:`_open_group` and starts its
    tasks; the body of the ``async with`` block then runs inside the group's scope, as in a
    nursery block. Leaving the block, early or not, cancels the group (its tasks feed the
    body only, so nobody needs them any more), waits for the tasks, raises what the error
    rule makes of their failures, and in every case then runs :meth:`_close_rest`, which
    closes what the tasks did not (an input no task had started reading, say).
    """

    __slots__ = ("_group",)

    def __init__(self) -> None:
        self._group: CallGroup | None = None

    async def _open_group(self) -> CallGroup:
        """Enter a new task group for this block and return it."""
        group = CallGroup()
        await group.__aenter__()
        self._group = group
        return group

    async def _close_rest(self) -> None:
        """Close what the tasks left open; runs after they have all ended, once."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        group = self._group
        assert group is not None, "the block was left without being entered"
        group.cancel_scope.cancel()
        try:
            return await group.__aexit__(exc_type, exc_val, exc_tb)
        finally:
            await self._close_rest()
