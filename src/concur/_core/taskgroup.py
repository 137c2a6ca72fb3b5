"""``TaskGroup``: anyio's task group, made to run component calls of either colour."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import inspect
import math
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import Token
from types import CoroutineType, TracebackType
from typing import Any, Literal, Self, TypeGuard, TypeVar, TypeVarTuple, cast, final, overload

import anyio
import anyio.abc

from .calls import prepare_thread_call, run_thread_call
from .checks import check_function, fn_name, is_async_callable
from .groups import guard_coro, is_cancellation
from .handoff import Policy
from .settings import Options, Settings, bounded, same, settings_var
from .threadcall import ThreadCall

__all__ = ["TaskGroup"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


@final
class TaskGroup(anyio.abc.TaskGroup):
    """A task group whose tasks may be async functions, sync functions or coroutines.

    An async context manager over :func:`anyio.create_task_group`, with anyio's and trio's
    semantics: the body and every task must finish before the block is left; the first
    task to fail cancels all the others (fail-fast), async and sync alike, and the group
    raises an :class:`ExceptionGroup` of the failures.

    It is an :class:`anyio.abc.TaskGroup`, so anyio APIs that take a task group accept it
    (``listener.serve(handler, task_group=tg)``): :meth:`start_soon`, :meth:`create_task`
    and :meth:`start` keep anyio's signatures and semantics (coroutine functions and
    coroutine objects only), run in the group's ambient settings, and are not bounded by
    the group's per-call *timeout*. Sync functions go through :meth:`spawn` only.

    A task's ``KeyboardInterrupt`` or ``SystemExit`` cancels the group and is raised in the
    group's ``BaseExceptionGroup``, as anyio and trio do, on both backends. On asyncio it is
    caught in the task that raised it (it would otherwise escape the event loop), so that
    task's handle reports it cancelled; on trio the handle holds it as its exception.

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
        "_guard",
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
        # validated now, so bad input fails at the call, not at ``async with``
        self._options = Options(thread_limit, limiter, handoff, timeout)
        self._name = name
        self._settings: Settings | None = None
        self._spawn_timeout: float | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._token: Token[Settings] | None = None
        self._interrupts: list[BaseException] = []
        self._guard = False

    @property
    def name(self) -> str | None:
        """The group's name, if it was given one."""
        return self._name

    @property
    def cancel_scope(self) -> anyio.CancelScope:  # pyright: ignore[reportIncompatibleVariableOverride]
        """The group's cancel scope (anyio's)."""
        return self._active().cancel_scope

    @cancel_scope.setter
    def cancel_scope(self, value: anyio.CancelScope) -> None:  # pyright: ignore[reportIncompatibleVariableOverride]
        raise AttributeError("a TaskGroup's cancel_scope cannot be replaced")

    async def __aenter__(self) -> Self:
        if self._tg is not None:
            raise RuntimeError("this TaskGroup has already been entered; make a new one")
        options = self._options.with_limiter(in_loop=True)
        parent = settings_var.get()
        # The group's timeout bounds spawned calls only; nested calls keep the parent's.
        self._settings = dataclasses.replace(options, timeout=None).over(parent)
        spawn_timeout = parent.timeout if options.timeout is None else options.timeout
        # math.inf: no per-call bound here, whatever an enclosing scope says
        self._spawn_timeout = None if spawn_timeout == math.inf else spawn_timeout
        tg = anyio.create_task_group()
        # On asyncio a task's KeyboardInterrupt or SystemExit escapes the event loop unless
        # the task catches it: guard each task there. trio's nursery delivers it to the
        # group itself (the task's handle then holds it as its exception).
        self._guard = type(tg).__module__.endswith("_asyncio")
        await tg.__aenter__()
        self._tg = tg
        self._token = settings_var.set(self._settings)
        return self

    # ``bool | None``, not anyio's ``bool``: pyright reads ``bool`` as "may swallow the
    # body's exception" and would call every name the body binds "possibly unbound" after it
    async def __aexit__(  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]
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
            name = fn_name(fn)
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

    @overload
    def spawn(
        self, fn: Coroutine[Any, Any, T], /, *, name: object = None
    ) -> anyio.TaskHandle[T]: ...

    @overload
    def spawn(
        self, fn: Callable[[*Ts], Awaitable[T]], /, *args: *Ts, name: object = None
    ) -> anyio.TaskHandle[T]: ...

    @overload
    def spawn(
        self, fn: Callable[[*Ts], T], /, *args: *Ts, name: object = None
    ) -> anyio.TaskHandle[T]: ...

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
        thread_call: ThreadCall | None = None
        if _is_coroutine(fn):
            if args:
                fn.close()
                raise TypeError(
                    "spawn() got a coroutine object and arguments: pass either a coroutine "
                    "object alone, or a function and its arguments"
                )
            coro = fn if timeout is None else bounded(timeout, same, fn)
        elif is_async_callable(fn):
            async_fn = cast("Callable[..., Awaitable[T]]", fn)
            if timeout is None:
                result = async_fn(*args)
                coro = result if _is_coroutine(result) else _await(result)
            else:
                coro = bounded(timeout, async_fn, *args)
        else:
            check_function(fn, "spawn", fix="tg.spawn")
            settings = cast(Settings, self._settings)
            # handed off now, so that a handoff warning points at the spawn() line
            thread_call = prepare_thread_call(cast("Callable[..., T]", fn), args, settings.handoff)
            coro = _thread_task(thread_call, settings, timeout)
        task_name = self._task_name(fn, name)
        if task_name is None:
            if thread_call is not None:  # a sync function: named after it, as anyio names tasks
                module = getattr(fn, "__module__", None)
                task_name = ".".join(part for part in (module, fn_name(fn)) if part)
            else:  # after the user's coroutine (anyio would name it after the guard)
                task_name = _coro_name(coro)
        guarded = guard_coro(coro, self._interrupted) if self._guard else coro
        try:
            return tg.create_task(guarded, name=task_name, context=self._context())
        except BaseException:
            coro.close()  # anyio closed the guard, which never started: close this too
            if thread_call is not None:
                thread_call.discard()  # and run the handoff cleanups the thread call owed
            raise

    def create_task(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: object = None,
        context: contextvars.Context | None = None,
    ) -> anyio.TaskHandle[T]:
        """Start the coroutine object *coro* as a task, as :meth:`anyio.abc.TaskGroup.create_task`.

        The task runs in the group's ambient settings (in a copy of *context*, if given)
        and is not bounded by the group's *timeout*. :meth:`start_soon` goes through here.

        Raises:
            TypeError: *coro* is not a coroutine object.
            RuntimeError: the group is not active (*coro* is closed).
        """
        tg = self._active()
        if not _is_coroutine(coro):
            if inspect.iscoroutine(coro):
                pass  # a coroutine of another type (a Cython one, say)
            else:
                raise TypeError(
                    f"create_task() takes a coroutine object, got {type(coro).__name__}; "
                    f"for a function, use start_soon(fn, *args) or spawn(fn, *args)"
                )
        if context is None:
            context = self._context()
        else:
            context = context.copy()
            context.run(settings_var.set, cast(Settings, self._settings))
        return tg.create_task(
            guard_coro(coro, self._interrupted) if self._guard else coro,
            name=_coro_name(coro) if name is None else name,
            context=context,
        )

    @overload
    async def start(
        self,
        func: Callable[..., Coroutine[Any, Any, Any]],
        *args: object,
        name: object = None,
        return_handle: Literal[False] = ...,
    ) -> Any: ...

    @overload
    async def start(
        self,
        func: Callable[..., Coroutine[Any, Any, T]],
        *args: object,
        name: object = None,
        return_handle: Literal[True],
    ) -> anyio.TaskHandle[T, Any]: ...

    async def start(
        self,
        func: Callable[..., Coroutine[Any, Any, Any]],
        *args: object,
        name: object = None,
        return_handle: Literal[False, True] = False,
    ) -> Any:
        """Start an async *func* and wait until it calls ``task_status.started()``.

        As :meth:`anyio.abc.TaskGroup.start`: *func* must accept a ``task_status`` keyword;
        the value it passes to ``started()`` is returned (with ``return_handle=True``, a
        :class:`anyio.TaskHandle` holding it as ``start_value``). The task runs in the
        group's ambient settings; the group's ``timeout`` does not apply.

        Cancellation: if the caller is cancelled before *func* reports it started, *func*
        is cancelled too and the cancellation propagates.
        """
        tg = self._active()
        if not is_async_callable(func):
            check_function(func, "start", fix="tg.start")
            raise TypeError(f"start() needs an async function taking task_status=, got {func!r}")
        # the started task copies the caller's context: put the group's settings in it
        token = settings_var.set(cast(Settings, self._settings))
        try:
            return await tg.start(
                func, *args, name=self._task_name(func, name), return_handle=return_handle
            )
        finally:
            settings_var.reset(token)

    def cancel(self, reason: str | None = None) -> None:
        """Cancel every task of the group, and the body (as ``cancel_scope.cancel()``).

        Args:
            reason: a message describing why, kept by anyio's cancel scope.
        """
        self._active().cancel_scope.cancel(reason)


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


async def _thread_task(thread_call: ThreadCall, settings: Settings, timeout: float | None) -> Any:
    return await bounded(timeout, run_thread_call, thread_call, settings.current_limiter(), False)
