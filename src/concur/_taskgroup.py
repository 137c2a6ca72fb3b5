"""``TaskGroup``: anyio's task group, made to run component calls of either colour."""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import Token
from types import CoroutineType, TracebackType
from typing import Any, Self, TypeGuard, TypeVar, cast, final

import anyio
import anyio.abc

from ._calls import (
    Settings,
    _run_in_thread,  # pyright: ignore[reportPrivateUsage]
    check_callable,
    derive_settings,
    is_async_callable,
    settings_var,
)
from ._groups import guard_coro, is_cancellation
from ._handoff import Policy

__all__ = ["TaskGroup"]

T = TypeVar("T")


@final
class TaskGroup:
    """A task group whose tasks may be async functions, sync functions or coroutines.

    An async context manager over :func:`anyio.create_task_group`, with anyio's and trio's
    semantics: the body and every task must finish before the block is left; the first
    task to fail cancels all the others (fail-fast), async and sync alike, and the group
    raises an :class:`ExceptionGroup` of the failures.

    Args:
        name: names the group; it prefixes the names of its tasks (``"name.task"``).
        thread_limit: run at most this many sync tasks in threads at once (a fresh
            :class:`anyio.CapacityLimiter`).
        limiter: share this limiter instead (not together with *thread_limit*).
        handoff: the handoff policy for thread calls made inside the group.
        timeout: seconds bounding each call made with :meth:`spawn` (``TimeoutError`` for
            that call, which then fails the group). It does not bound :meth:`start`, the
            body or nested calls. ``math.inf`` means no bound even where an enclosing
            :func:`scope` sets a per-call timeout.

    Settings not given are inherited from the enclosing :func:`scope` or group, and the
    group's limiter and handoff policy are ambient inside its tasks: a component that
    calls :func:`concur.to_thread` from a spawned task gets them.

    Raises:
        ValueError: both *thread_limit* and *limiter*, ``thread_limit < 1``, an unknown
            policy or a negative timeout.
    """

    __slots__ = (
        "_interrupts",
        "_name",
        "_options",
        "_settings",
        "_spawn_timeout",
        "_tg",
        "_token",
    )

    def __init__(
        self,
        *,
        name: str | None = None,
        thread_limit: int | None = None,
        limiter: anyio.CapacityLimiter | None = None,
        handoff: Policy | None = None,
        timeout: float | None = None,
    ) -> None:
        # validate now, so bad input fails at the call, not at ``async with``
        derive_settings(
            Settings(),
            thread_limit=thread_limit,
            limiter=limiter,
            handoff=handoff,
            timeout=timeout,
            in_loop=False,
        )
        self._name = name
        self._options = (thread_limit, limiter, handoff, timeout)
        self._settings: Settings | None = None
        self._spawn_timeout: float | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._token: Token[Settings] | None = None
        self._interrupts: list[BaseException] = []

    @property
    def name(self) -> str | None:
        """The group's name, if it was given one."""
        return self._name

    @property
    def cancel_scope(self) -> anyio.CancelScope:
        """The group's cancel scope (anyio's)."""
        return self._active().cancel_scope

    async def __aenter__(self) -> Self:
        if self._tg is not None:
            raise RuntimeError("this TaskGroup has already been entered; make a new one")
        thread_limit, limiter, handoff, timeout = self._options
        parent = settings_var.get()
        # The group's timeout bounds spawned calls only; nested calls keep the parent's.
        self._settings = derive_settings(
            parent,
            thread_limit=thread_limit,
            limiter=limiter,
            handoff=handoff,
            timeout=None,
            in_loop=True,
        )
        spawn_timeout = parent.timeout if timeout is None else timeout
        # math.inf: no per-call bound here, whatever an enclosing scope says
        self._spawn_timeout = None if spawn_timeout == math.inf else spawn_timeout
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._token = settings_var.set(self._settings)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        tg = self._active()
        if self._token is not None:
            # exited in another context than entered: nothing to undo
            with contextlib.suppress(ValueError):
                settings_var.reset(self._token)
            self._token = None
        try:
            suppress = await tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            if not self._interrupts:
                raise
            others = [e for e in group.exceptions if not is_cancellation(e)]
            raise BaseExceptionGroup(group.message, [*self._interrupts, *others]) from None
        if self._interrupts:
            # a task's KeyboardInterrupt or SystemExit, caught in the task so that it cannot
            # escape an asyncio event loop; raised in a group, as anyio and trio do
            raise BaseExceptionGroup("unhandled errors in a TaskGroup", self._interrupts)
        return suppress

    def _interrupted(self, exc: BaseException) -> None:
        self._interrupts.append(exc)
        self._active().cancel_scope.cancel()

    def _active(self) -> anyio.abc.TaskGroup:
        if self._tg is None:
            raise RuntimeError("enter the TaskGroup with 'async with' before using it")
        return self._tg

    def _task_name(self, fn: object, name: object) -> object:
        if name is None:
            if self._name is None:
                return None
            name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
        if self._name is None:
            return name
        return f"{self._name}.{name}"

    def _context(self) -> contextvars.Context | None:
        settings = self._settings
        if settings_var.get() is settings:
            return None  # the task copies the current context, which already has them
        ctx = contextvars.copy_context()
        ctx.run(settings_var.set, cast(Settings, settings))
        return ctx

    def spawn(
        self,
        fn: Callable[..., Awaitable[T]] | Callable[..., T] | Coroutine[Any, Any, T],
        /,
        *args: object,
        name: object = None,
    ) -> anyio.TaskHandle[T]:
        """Start *fn* as a task of this group and return its :class:`anyio.TaskHandle`.

        *fn* may be an async callable (run as a task on the event loop), a sync callable
        (run in a worker thread through :func:`concur.to_thread`, under the group's limiter
        and handoff policy) or a coroutine object (then no *args*). Which one it is, is
        discovered now. A coroutine object that never starts because the group was
        cancelled is closed, without a "never awaited" warning.

        The group's ``timeout`` bounds the call. A failure, a handoff refusal included,
        fails the task, which cancels the group.

        Raises:
            TypeError: *fn* is not callable, or is a coroutine object given *args*.
            RuntimeError: the group is not active.
        """
        tg = self._active()
        timeout = self._spawn_timeout
        coro: Coroutine[Any, Any, Any]
        if _is_coroutine(fn):
            if args:
                fn.close()
                raise TypeError(
                    "spawn() got a coroutine object and arguments: pass either a coroutine "
                    "object alone, or a function and its arguments"
                )
            coro = fn if timeout is None else _timed_coro(fn, timeout)
        elif is_async_callable(fn):
            async_fn = cast("Callable[..., Awaitable[T]]", fn)
            if timeout is None:
                result = async_fn(*args)
                coro = result if _is_coroutine(result) else _await(result)
            else:
                coro = _timed_call(async_fn, args, timeout)
        else:
            check_callable(fn, "spawn")
            settings = cast(Settings, self._settings)
            coro = _thread_task(cast("Callable[..., T]", fn), args, settings, timeout)
        task_name = self._task_name(fn, name)
        if task_name is None:
            task_name = _coro_name(coro)  # anyio would name the task after the guard
        guarded = guard_coro(coro, self._interrupted)
        try:
            return tg.create_task(guarded, name=task_name, context=self._context())
        except BaseException:
            coro.close()  # anyio closed the guard, which never started: close this too
            raise

    async def start(
        self,
        fn: Callable[..., Awaitable[Any]],
        /,
        *args: object,
        name: object = None,
    ) -> Any:
        """Start an async *fn* and wait until it calls ``task_status.started()``.

        As :meth:`anyio.abc.TaskGroup.start`: *fn* must accept a ``task_status`` keyword;
        the value it passes to ``started()`` is returned. The group's ``timeout`` does not
        apply.

        Cancellation: if the caller is cancelled before *fn* reports it started, *fn* is
        cancelled too and the cancellation propagates.
        """
        tg = self._active()
        if not is_async_callable(fn):
            check_callable(fn, "start")
            raise TypeError(f"start() needs an async function taking task_status=, got {fn!r}")
        # the started task copies the caller's context: put the group's settings in it
        token = settings_var.set(cast(Settings, self._settings))
        try:
            return await tg.start(
                cast("Callable[..., Coroutine[Any, Any, Any]]", fn),
                *args,
                name=self._task_name(fn, name),
            )
        finally:
            settings_var.reset(token)

    def cancel(self) -> None:
        """Cancel every task of the group, and the body (as ``cancel_scope.cancel()``)."""
        self._active().cancel_scope.cancel()


def _coro_name(coro: Coroutine[Any, Any, Any]) -> str:
    # as anyio names a task after its coroutine
    frame = coro.cr_frame if isinstance(coro, CoroutineType) else None
    module = frame.f_globals.get("__name__") if frame is not None else None
    qualname = getattr(coro, "__qualname__", None)
    return ".".join(str(part) for part in (module, qualname) if part)


def _is_coroutine(obj: object) -> TypeGuard[Coroutine[Any, Any, Any]]:
    return type(obj) is CoroutineType  # faster than inspect.iscoroutine on the spawn path


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def _timed_coro(coro: Coroutine[Any, Any, T], timeout: float) -> T:
    with anyio.fail_after(timeout):
        return await coro


async def _timed_call(fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], timeout: float) -> T:
    with anyio.fail_after(timeout):
        return await fn(*args)


async def _thread_task(
    fn: Callable[..., T], args: tuple[Any, ...], settings: Settings, timeout: float | None
) -> T:
    limiter = settings.current_limiter()
    if timeout is None:
        return await _run_in_thread(fn, args, limiter, settings.handoff, False)
    with anyio.fail_after(timeout):
        return await _run_in_thread(fn, args, limiter, settings.handoff, False)
