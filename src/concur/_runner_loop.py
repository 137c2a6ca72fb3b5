"""The event loop of a :class:`concur.Runner`: the calls handed to it and its state.

A ``LoopCall`` is one ``run``/``submit``/``map`` call of a Runner; ``LoopState`` is what the
loop thread hands back once its loop runs. Everything here but ``start_thread`` runs on
the loop's thread.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import anyio

from ._loops import adopt_context, await_fn

if TYPE_CHECKING:
    import anyio.abc
    import anyio.lowlevel

__all__ = ["LoopCall", "LoopState", "run_loop_call", "settle_dropped", "start_thread", "stop_loop"]

T = TypeVar("T")


# --- one call on the runner's loop --------------------------------------------------------------


@final
class LoopCall(Generic[T]):
    """One ``run``/``submit``/``map`` call: its future and its task's cancel scope.

    ``future`` stays pending while the task runs, so ``future.cancel()`` works until the
    task has finished (it then cancels the task). ``done`` is set only once the task has
    finished for good, cleanup included.
    """

    __slots__ = (
        "args",
        "cancel_requested",
        "context",
        "done",
        "fn",
        "future",
        "lock",
        "scope",
        "spawned",
    )

    def __init__(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], context: contextvars.Context
    ) -> None:
        self.fn = fn
        self.args = args
        self.context = context
        self.future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.scope: anyio.CancelScope | None = None
        self.cancel_requested = False
        self.spawned = False  # set on the loop thread when the loop takes the call

    def attach(self, scope: anyio.CancelScope) -> bool:
        """Record the task's scope (on the loop); ``False`` if cancelled already."""
        with self.lock:
            self.scope = scope
            return not self.cancel_requested

    def settle_result(self, value: T) -> None:
        if self.future.set_running_or_notify_cancel():
            self.future.set_result(value)

    def settle_exception(self, exc: BaseException) -> None:
        if self.future.set_running_or_notify_cancel():
            self.future.set_exception(exc)

    def settle_cancelled(self) -> None:
        with self.lock:
            self.cancel_requested = True  # so the future's own callback does nothing more
        self.future.cancel()
        self.future.set_running_or_notify_cancel()


@final
class LoopState:
    """What the loop thread hands back once it runs."""

    __slots__ = (
        "active",
        "ended",
        "handed",
        "handed_lock",
        "ident",
        "idle",
        "stop",
        "tg",
        "token",
    )

    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self.tg = tg
        self.ident = threading.get_ident()
        self.token = anyio.lowlevel.current_token()
        self.stop = anyio.Event()
        self.active = 0  # calls whose task has not ended (counted on the loop thread)
        self.idle: anyio.Event | None = None
        # calls handed to the loop from other threads and not yet taken by it: asyncio
        # drops a callback that comes after its loop's last turn but before it is closed,
        # so the loop thread settles these itself once its loop has ended
        self.handed_lock = threading.Lock()
        self.handed: set[LoopCall[Any]] = set()
        self.ended = False

    def call_ended(self) -> None:
        self.active -= 1
        if not self.active and self.idle is not None:
            self.idle.set()

    async def wait_idle(self) -> None:
        while self.active:
            self.idle = anyio.Event()
            await self.idle.wait()


def settle_dropped(loop: LoopState, error: RuntimeError) -> None:
    """Once the loop has ended: fail the calls handed to it that it never took."""
    with loop.handed_lock:
        loop.ended = True
        dropped, loop.handed = loop.handed, set()
    for call in dropped:
        call.settle_exception(error)
        call.done.set()


def stop_loop(loop: LoopState, *, cancel: bool) -> None:
    """On the loop: let the main task end (after the calls, or cancelling them)."""
    loop.stop.set()
    if cancel:
        loop.tg.cancel_scope.cancel("the concur.Runner's close() was interrupted (Ctrl-C)")


def start_thread(thread: threading.Thread, started: concurrent.futures.Future[LoopState]) -> bool:
    """Start the loop thread; wait until its loop runs or failed; whether Ctrl-C came.

    Starting a loop takes a moment and cannot be undone half-way: a Ctrl-C meanwhile is
    held until the loop runs (so that :meth:`concur.Runner.close` can end it), then raised by
    the caller. (``Thread.start`` blocks only once the thread exists, so a Ctrl-C there
    comes while the thread starts.)
    """
    interrupted = False
    try:
        thread.start()
    except KeyboardInterrupt:
        interrupted = True
    while True:
        try:
            concurrent.futures.wait((started,))
        except KeyboardInterrupt:
            interrupted = True
        else:
            return interrupted


async def run_loop_call(loop: LoopState, call: LoopCall[T]) -> None:
    """The task of one call: the caller's context, its own cancel scope, its outcome."""
    cancelled = anyio.get_cancelled_exc_class()
    try:
        adopt_context(call.context)
        with anyio.CancelScope() as scope:
            if not call.attach(scope):
                call.settle_cancelled()  # cancelled before it started: fn never runs
                return
            try:
                value = await await_fn(call.fn, call.args)
            except cancelled:
                raise
            except BaseException as exc:  # delivered to the caller, never to the loop
                call.settle_exception(exc)
                return
            call.settle_result(value)
            return
        call.settle_cancelled()  # our own scope caught the cancellation
    except cancelled:
        call.settle_cancelled()  # the runner is closing
        raise
    finally:
        loop.call_ended()
        call.done.set()
