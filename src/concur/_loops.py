"""Where the calling thread stands: on an event loop, in a worker thread, or neither.

Shared by :mod:`concur._runner` and :mod:`concur._interop`; no public names.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, cast

import anyio
import anyio.from_thread
import anyio.lowlevel

from ._core import (
    PerRunLimiter,
    Settings,
    settings_var,
)

T = TypeVar("T")

BACKENDS: Final = ("asyncio", "trio")

#: seconds between two looks at a blocked wait, so that a signal handler (Ctrl-C) runs
WAIT_SLICE: Final = 0.1


def check_backend(backend: object) -> None:
    if backend not in BACKENDS:
        raise ValueError(f'backend must be "asyncio" or "trio", got {backend!r}')


def loop_running_here() -> bool:
    """Whether an event loop (asyncio or trio) is running in the calling thread.

    True also in sync code called from a loop thread, such as a notebook cell.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return True
    trio = sys.modules.get("trio")  # never import trio just to ask
    if trio is not None and trio.lowlevel.in_trio_run():
        return True
    sniffio = sys.modules.get("sniffio")
    return sniffio is not None and sniffio.thread_local.name is not None


def in_worker_thread() -> bool:
    """Whether the calling thread is an anyio worker thread (``anyio.to_thread``, ``to_thread``).

    Asks anyio's public :func:`anyio.from_thread.check_cancelled`: it raises
    :class:`anyio.NoEventLoopError` outside a worker thread, and inside one it either
    returns or raises the cancellation exception of the waiting task.
    """
    try:
        anyio.from_thread.check_cancelled()
    except anyio.NoEventLoopError:
        return False
    except BaseException:  # cancelled: still a worker thread
        return True
    return True


def on_loop_thread_error(what: str, instead: str) -> RuntimeError:
    return RuntimeError(
        f"{what} was called on an event loop's own thread, where blocking until the "
        f"result would stop that loop from ever producing it (a deadlock); {instead}"
    )


async def await_fn(fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
    """Call *fn* and await what it returned (a ``TypeError`` if it is not awaitable)."""
    value = fn(*args)
    if not isinstance(value, Awaitable):  # pyright: ignore[reportUnnecessaryIsInstance]
        name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
        raise TypeError(
            f"{name} is not an async function (it returned {type(value).__name__}); "
            f"pass an async function, or wrap a sync one with concur.asyncify()"
        )
    return await value


def _backend_vars() -> tuple[object, ...]:
    sniffio = sys.modules.get("sniffio")
    return () if sniffio is None else (sniffio.current_async_library_cvar,)


def adopt_context(context: contextvars.Context) -> None:
    """Set, in the current task's context, every variable of *context*.

    Each task runs in a context of its own, so this makes a task on another loop see the
    values of the caller's context, as if it ran in a copy of it. The variables with which
    async libraries tell which of them is running are left alone.
    """
    skip = _backend_vars()
    for var, value in context.items():
        if var not in skip:
            var.set(value)


#: per limiter in force at a call, the one that stands for it on other loops
_loop_limiters: weakref.WeakKeyDictionary[anyio.CapacityLimiter, PerRunLimiter] = (
    weakref.WeakKeyDictionary()
)
_loop_limiters_lock: Final = threading.Lock()


def _limiter_for_another_loop(settings: Settings) -> Settings:
    limiter = settings.limiter
    if not isinstance(limiter, anyio.CapacityLimiter):
        return settings  # none, or one per event-loop run already
    with _loop_limiters_lock:
        per_run = _loop_limiters.get(limiter)
        if per_run is None:
            # anyio's limiter takes a float total (math.inf) as well as an int
            per_run = _loop_limiters[limiter] = PerRunLimiter(cast(int, limiter.total_tokens))
    return dataclasses.replace(settings, limiter=per_run)


def context_for_another_loop() -> contextvars.Context:
    """A copy of the calling thread's context, for a task on another loop to adopt.

    An :class:`anyio.CapacityLimiter` is bound to the loop (and backend) that first uses
    it, so the limiter of the ambient settings (from a ``concur.scope(thread_limit=...)``
    entered on the caller's loop, or ``limiter=``) cannot be used on another loop. In
    the copy it is replaced by a limiter of as many tokens per event-loop run, the same
    one for every call that brings that limiter: the cap holds on each loop.
    """
    context = contextvars.copy_context()
    settings = context.get(settings_var)
    if settings is not None:
        context.run(settings_var.set, _limiter_for_another_loop(settings))
    return context


def call_soon(token: anyio.lowlevel.EventLoopToken, fn: Callable[[], object]) -> None:
    """Schedule ``fn()`` on the loop of *token* without waiting (from any thread).

    Raises:
        anyio.RunFinishedError: that loop is no longer running.
    """
    token.backend_class.run_sync_soon(fn, (), token.native_token)


def wait_event(event: threading.Event) -> None:
    """Block until *event* is set, in slices, so that Ctrl-C interrupts the wait."""
    while not event.wait(WAIT_SLICE):
        pass
