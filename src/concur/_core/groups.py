"""The project's error rule, written once: :func:`collapse`, and the helpers' task group.

The call-like helpers (``gather``, ``gather_settled``, ``race``, ``first_success``,
``map_async``, the ``amap`` block, the stream operators) raise what :func:`collapse` makes
of their task group's exception group, and run their child tasks in a :class:`CallGroup`,
which catches a ``KeyboardInterrupt`` or ``SystemExit`` in the child task that raised it
(on asyncio it would otherwise escape the event loop), cancels the other tasks and
re-raises it bare in the caller. :class:`concur.TaskGroup` keeps anyio's group
semantics, and uses :func:`guard_coro` for the same catch in its tasks on asyncio.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast, final

import anyio

if TYPE_CHECKING:  # at run time anyio imports these on first use
    import anyio.lowlevel

__all__ = [
    "INTERRUPTS",
    "CallGroup",
    "collapse",
    "first_interrupt",
    "guard_coro",
    "is_cancellation",
]

T = TypeVar("T")

#: what a helper re-raises bare wherever in its tasks it came from
INTERRUPTS: Final = (KeyboardInterrupt, SystemExit)


def _cancel_classes() -> tuple[type[BaseException], ...]:
    # An instance of a backend's cancellation class exists only if its module was imported,
    # so this needs no event loop and imports nothing.
    classes: list[type[BaseException]] = []
    if (asyncio := sys.modules.get("asyncio")) is not None:
        classes.append(asyncio.CancelledError)
    if (trio := sys.modules.get("trio")) is not None:
        classes.append(trio.Cancelled)
    return tuple(classes)


def is_cancellation(exc: BaseException) -> bool:
    """Whether *exc* is a backend's cancellation, or a group of nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        members = cast("BaseExceptionGroup[BaseException]", exc).exceptions
        return all(is_cancellation(member) for member in members)
    return isinstance(exc, _cancel_classes())


def first_interrupt(exc: BaseException) -> BaseException | None:
    """The first ``KeyboardInterrupt`` or ``SystemExit`` in *exc*, depth first, if any."""
    if isinstance(exc, INTERRUPTS):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        members = cast("BaseExceptionGroup[BaseException]", exc).exceptions
        for member in members:
            found = first_interrupt(member)
            if found is not None:
                return found
    return None


def collapse(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What the error rule raises for the exception group of a task group.

    - If *group* holds a ``KeyboardInterrupt`` or ``SystemExit`` (at any depth), the first
      one, bare.
    - Else, if exactly one member is a real failure and the others are only cancellations
      (the siblings it cancelled, fail-fast), that member, bare. A member that is itself a
      group is returned as it is, not flattened.
    - Else *group* itself: two or more real failures, or nothing but cancellations (which
      the cancel scopes they belong to will catch).

    It never raises, and needs no event loop. A helper of your own that runs jobs in an
    anyio task group gets concur's error rule with::

        try:
            async with anyio.create_task_group() as tg:
                ...
        except BaseExceptionGroup as group:
            raise concur.collapse(group) from None

    Args:
        group: the exception group a task group raised.

    Returns:
        The exception to raise in its place (possibly *group* itself).
    """
    interrupt = first_interrupt(group)
    if interrupt is not None:
        return interrupt
    real = [member for member in group.exceptions if not is_cancellation(member)]
    if len(real) == 1:
        return real[0]
    return group


async def guard_coro(
    coro: Coroutine[Any, Any, T], on_interrupt: Callable[[BaseException], None]
) -> T:
    """Await *coro*; a ``KeyboardInterrupt`` or ``SystemExit`` goes to *on_interrupt*.

    *on_interrupt* records it and cancels the task's group; the task then ends with the
    group's cancellation (at once: it is inside the cancelled scope), so that on asyncio
    the exception does not escape the event loop.
    """
    try:
        return await coro
    except INTERRUPTS as exc:
        on_interrupt(exc)
        await anyio.lowlevel.checkpoint()
        raise  # pragma: no cover - the checkpoint raised the group's cancellation


@final
class CallGroup:
    """The task group of a call-like helper: the error rule applied at its exit.

    On leaving, a ``KeyboardInterrupt`` or ``SystemExit`` that a task (or the body) raised
    is raised bare; otherwise the task group's exception group becomes what
    :func:`collapse` makes of it. A lone failure that replaces the body's cancellation by
    fail-fast does not show that cancellation as its context.
    """

    __slots__ = ("_interrupt", "_tg")

    def __init__(self) -> None:
        self._tg = anyio.create_task_group()
        self._interrupt: BaseException | None = None

    @property
    def cancel_scope(self) -> anyio.CancelScope:
        """The task group's cancel scope."""
        return self._tg.cancel_scope

    def start_soon(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Start ``fn(*args)`` as a task of the group."""
        self._tg.create_task(guard_coro(fn(*args), self._interrupted))

    def _interrupted(self, exc: BaseException) -> None:
        if self._interrupt is None:
            self._interrupt = exc
        self._tg.cancel_scope.cancel()

    async def __aenter__(self) -> CallGroup:
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        error: BaseException | None
        suppress: bool | None = None
        try:
            suppress = await self._tg.__aexit__(exc_type, exc_val, exc_tb)
        except BaseExceptionGroup as group:
            error = collapse(group)
        except BaseException as exc:
            error = exc
        else:
            error = None
        if self._interrupt is not None:
            error = self._interrupt  # it wins over everything else
        if error is None:
            # On asyncio a task group can end normally although its caller was cancelled
            # meanwhile (its tasks were cancelled, the body never waited again): the
            # helper must not return incomplete results then.
            await anyio.lowlevel.checkpoint_if_cancelled()
            return suppress
        try:
            if error is not exc_val and exc_val is not None and is_cancellation(exc_val):
                # the body was only cancelled by fail-fast: do not show it as the context
                raise error from error.__cause__
            raise error
        finally:
            del error
