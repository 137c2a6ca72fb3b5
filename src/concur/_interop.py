"""Crossing between sync and async code, and between loops: ``run``, adapters, futures.

- :func:`run`: run an async function from sync code, even where a loop already runs.
- :func:`syncify` / :func:`asyncify`: adapters keeping the wrapped function's signature.
- :func:`from_thread`: from a worker thread, run an async function on its parent loop.
- :func:`wait_future`: await a future of another thread or loop, from any backend.

:class:`~concur.Runner` (in :mod:`concur._runner`) keeps one loop for many calls.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal, ParamSpec, TypeVar, TypeVarTuple, overload

import anyio
import anyio.from_thread
import anyio.lowlevel

from ._core import (
    SyncFunctionExpected,
    check_async_function,
    check_function,
    is_async_callable,
    to_thread,
)
from ._loops import (
    WAIT_SLICE,
    await_fn,
    call_soon,
    check_backend,
    in_worker_thread,
    loop_running_here,
    on_loop_thread_error,
)
from ._runner import Runner

__all__ = ["asyncify", "from_thread", "run", "syncify", "wait_future"]

T = TypeVar("T")
P = ParamSpec("P")
Ts = TypeVarTuple("Ts")


# --- run ----------------------------------------------------------------------------------


def run(
    fn: Callable[[*Ts], Awaitable[T]],
    /,
    *args: *Ts,
    backend: Literal["asyncio", "trio"] = "asyncio",
    backend_options: dict[str, Any] | None = None,
) -> T:
    """Run the async function *fn* from sync code and return its result.

    Like :func:`anyio.run`, but it works wherever sync code may be:

    - **No loop in this thread** (a script): exactly :func:`anyio.run`, in this thread.
    - **A loop already runs in this thread** (a notebook cell, sync code called from a
      loop): *fn* runs on a new loop of *backend* on a background thread, which has
      ended when ``run`` returns. The calling thread, and so its loop, is blocked
      meanwhile. No ``nest_asyncio``. For many calls, keep a :class:`Runner`.
    - **In an anyio worker thread** (started by :func:`concur.to_thread` or
      ``anyio.to_thread``): *fn* runs on the parent loop, whatever its backend
      (*backend* is then ignored), through :func:`anyio.from_thread.run`; cancelling
      the task waiting for the thread cancels *fn* too.

    *fn* runs in a copy of the calling thread's context, so :func:`concur.scope`
    settings in force here apply inside.

    **Ctrl-C.** With a loop in the thread, as :meth:`Runner.run`: the task is cancelled,
    its cleanup awaited, then ``KeyboardInterrupt`` raised; a second Ctrl-C raises at once.
    Without one, in the main thread: on asyncio the same (concur's SIGINT handler replaces
    asyncio's for the run); on trio, trio's own handling (``KeyboardInterrupt`` is raised
    in *fn*, whose ``finally`` blocks run, awaits included).

    Raises:
        ValueError: an unknown *backend*.
        TypeError: *fn* is not callable, or not async.
    """
    check_async_function(fn, "concur.run")
    check_backend(backend)
    if in_worker_thread():
        return anyio.from_thread.run(await_fn, fn, args)
    if not loop_running_here():
        if backend == "asyncio" and _sigint_is_default():
            return _run_here_on_asyncio(fn, args, backend_options)
        return anyio.run(await_fn, fn, args, backend=backend, backend_options=backend_options)
    return _run_on_a_thread(fn, args, backend, backend_options)


def _sigint_is_default() -> bool:
    return (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )


def _run_here_on_asyncio(
    fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], backend_options: dict[str, Any] | None
) -> T:
    """``anyio.run`` on asyncio in the main thread, with a Ctrl-C that always cancels.

    asyncio's own handler cancels the main task from inside the signal handler, and under
    anyio that cancellation is sometimes lost: only a second Ctrl-C then gets through. Here
    the handler only records the Ctrl-C; a loop callback, every ``WAIT_SLICE`` seconds,
    sees it and cancels a scope around *fn*. A second Ctrl-C raises ``KeyboardInterrupt``
    at once, as asyncio's does.
    """
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: object) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()

    async def main() -> T:
        loop = asyncio.get_running_loop()
        handles: list[asyncio.TimerHandle] = []
        with anyio.CancelScope() as scope:

            def watch() -> None:  # a loop callback, never inside a task step
                if interrupted.is_set():
                    scope.cancel()
                else:
                    handles[0] = loop.call_later(WAIT_SLICE, watch)

            handles.append(loop.call_later(WAIT_SLICE, watch))
            signal.signal(signal.SIGINT, on_sigint)
            try:
                return await await_fn(fn, args)
            finally:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                handles[0].cancel()
        raise KeyboardInterrupt  # only the watcher cancels the scope

    result = anyio.run(main, backend="asyncio", backend_options=backend_options)
    if interrupted.is_set():  # the function finished despite the cancellation
        raise KeyboardInterrupt
    return result


def _run_on_a_thread(
    fn: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    backend: Literal["asyncio", "trio"],
    backend_options: dict[str, Any] | None,
) -> T:
    runner = Runner(backend, backend_options=backend_options, name=f"concur.run-{backend}")
    try:
        result = runner.run(fn, *args)
    except KeyboardInterrupt:
        if not runner.active_calls:
            runner.close()
            raise
        # a second Ctrl-C: raise now; the loop thread ends once the cleanup has finished
        threading.Thread(target=runner.close, name=f"{runner.name}-closer", daemon=True).start()
        raise
    except BaseException:
        runner.close()
        raise
    runner.close()
    return result


# --- adapters ------------------------------------------------------------------------------


def syncify(fn: Callable[P, Awaitable[T]], /) -> Callable[P, T]:
    """Make a sync function of the async function *fn*; it runs *fn* with :func:`run`.

    The result keeps *fn*'s signature for type checkers (``ParamSpec``) and its name,
    docstring and ``__wrapped__`` (``functools.wraps``), and accepts keyword
    arguments. Calling it blocks: without a loop in the thread, on a fresh loop; with one
    (a notebook), on a background loop thread; in an anyio worker thread, on the parent
    loop (see :func:`run`). Calling it from an async function is legal but blocks that
    loop: there, ``await fn(...)`` instead.

    Raises:
        TypeError: *fn* is not callable, is a coroutine object, or is a sync function.
    """
    check_async_function(fn, "concur.syncify", args="")

    @functools.wraps(fn)
    def sync_fn(*args: P.args, **kwargs: P.kwargs) -> T:
        return run(functools.partial(fn, *args, **kwargs))

    return sync_fn


@overload
def asyncify(  # type: ignore[overload-overlap]  # an async fn matches both: the first wins
    fn: Callable[P, Coroutine[Any, Any, Any]], /
) -> SyncFunctionExpected: ...


@overload
def asyncify(fn: Callable[P, T], /) -> Callable[P, Coroutine[Any, Any, T]]: ...


def asyncify(fn: Callable[P, T], /) -> Callable[P, Coroutine[Any, Any, T]]:  # type: ignore[misc]
    """Make an async function of the sync function *fn*; it runs *fn* in a worker thread.

    Calls go through :func:`concur.to_thread`, so the ambient limiter (the hard thread
    cap) and handoff policy apply. The result keeps *fn*'s signature for type checkers
    (``ParamSpec``) and ``functools.wraps`` metadata, and accepts keyword arguments.

    Cancellation is that of :func:`concur.to_thread`: the caller waits for *fn* to
    return (it can stop early with :func:`concur.check_cancelled`), then raises.

    Raises:
        TypeError: *fn* is not callable, or is already async.
    """
    check_function(fn, "concur.asyncify", args="")
    if is_async_callable(fn):
        raise TypeError(f"asyncify() takes a sync function; {fn!r} is async already")

    @functools.wraps(fn)
    async def async_fn(*args: P.args, **kwargs: P.kwargs) -> T:
        return await to_thread(functools.partial(fn, *args, **kwargs))

    return async_fn


def from_thread(fn: Callable[[*Ts], Awaitable[T]], /, *args: *Ts) -> T:
    """From a worker thread, run the async function *fn* on its parent event loop.

    For sync code in a thread started by :func:`concur.to_thread` (or
    ``anyio.to_thread.run_sync``), on either backend. Blocks the worker thread until
    *fn* has returned; the parent loop keeps running meanwhile. *fn* runs in a copy of the
    worker thread's context. If the task waiting for the thread is cancelled, *fn* is
    cancelled too.

    Raises:
        RuntimeError: called on an event loop's thread (``await fn(*args)`` there), or in
            a thread no event loop started (use a :class:`Runner` there).
        TypeError: *fn* is not callable, or not async.
    """
    check_async_function(fn, "concur.from_thread")
    if not in_worker_thread():
        if loop_running_here():
            raise on_loop_thread_error("from_thread()", "await fn(*args) there instead")
        raise RuntimeError(
            f"from_thread() runs {getattr(fn, '__qualname__', fn)!r} on the loop that "
            f"started this thread, but no event loop started {threading.current_thread().name!r}; "
            f"use concur.run() or a concur.Runner to call async code from here"
        )
    return anyio.from_thread.run(await_fn, fn, args)


# --- futures ---------------------------------------------------------------------------------

AnyFuture = concurrent.futures.Future[T] | asyncio.Future[T] | anyio.Future[T]


async def wait_future(future: AnyFuture[T], /) -> T:
    """Wait for *future* and return its result, on any backend, from any loop.

    Accepts a :class:`concurrent.futures.Future` (from an executor, a thread, or
    :meth:`Runner.submit`), an :class:`asyncio.Future` or task belonging to a loop in
    another thread, or an :class:`anyio.Future` of the current loop. A future of the
    current loop is simply awaited. Nothing blocks: the future's completion is handed to
    this loop by a done-callback.

    Cancellation: cancelling the waiting task cancels *future* (for a concurrent future,
    only while it is pending; a :meth:`Runner.submit` future stays pending until its task
    has finished, so its task is cancelled), then the cancellation is raised without
    waiting for the future's owner to finish.

    Raises:
        anyio.FutureCancelled: *future* was cancelled by someone else.
        RuntimeError: an :class:`asyncio.Future` whose loop is closed before it finished.
        TypeError: *future* is not one of these futures.
        BaseException: a failed future's own exception, as it is.
    """
    if isinstance(future, anyio.Future):
        return await _wait_anyio(future)
    if isinstance(future, concurrent.futures.Future):
        return await _wait_concurrent(future)
    if asyncio.isfuture(future):
        return await _wait_asyncio(future)
    raise TypeError(
        "wait_future() takes a concurrent.futures.Future, an asyncio.Future or an "
        f"anyio.Future, got {type(future).__name__}"
    )


def _settled_result(future: asyncio.Future[T] | concurrent.futures.Future[T]) -> T:
    """The result of a finished *future*; its exception, or ``FutureCancelled``, raised."""
    if future.cancelled():
        raise _cancelled_error()
    exc = future.exception()
    if exc is not None:
        raise exc
    return future.result()


def _cancelled_error() -> anyio.FutureCancelled:
    return anyio.FutureCancelled("the future was cancelled by someone else")


async def _wait_anyio(future: anyio.Future[T]) -> T:
    try:
        await future.wait()
    except anyio.get_cancelled_exc_class():
        future.cancel()
        raise
    status = future.status
    if status is anyio.Future.Status.CANCELLED:
        raise _cancelled_error()
    if status is anyio.Future.Status.FAILED:
        exc = future.exception
        assert exc is not None
        raise exc
    return future.return_value


def _notifier(token: anyio.lowlevel.EventLoopToken, event: anyio.Event) -> Callable[[Any], None]:
    def notify(_: object) -> None:
        # the waiter's loop may be gone: then there is nobody to tell
        with contextlib.suppress(anyio.RunFinishedError):
            call_soon(token, event.set)

    return notify


async def _wait_concurrent(future: concurrent.futures.Future[T]) -> T:
    if not future.done():
        event = anyio.Event()
        future.add_done_callback(_notifier(anyio.lowlevel.current_token(), event))
        try:
            await event.wait()
        except anyio.get_cancelled_exc_class():
            future.cancel()
            raise
    else:
        await anyio.lowlevel.checkpoint()
    return _settled_result(future)


async def _wait_asyncio(future: asyncio.Future[T]) -> T:
    future_loop = future.get_loop()
    try:
        here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    if future_loop is here:
        if not future.done():
            event = anyio.Event()

            def notify(_: object) -> None:
                event.set()

            future.add_done_callback(notify)
            try:
                await event.wait()
            except anyio.get_cancelled_exc_class():
                future.remove_done_callback(notify)
                future.cancel()
                raise
        else:
            await anyio.lowlevel.checkpoint()
    elif not future.done():
        event = anyio.Event()
        try:
            future_loop.call_soon_threadsafe(
                future.add_done_callback, _notifier(anyio.lowlevel.current_token(), event)
            )
        except RuntimeError:  # closed loop
            if not future.done():
                raise RuntimeError(
                    f"wait_future(): the loop of {future!r} is closed; it will never finish"
                ) from None
        else:
            try:
                await event.wait()
            except anyio.get_cancelled_exc_class():
                with contextlib.suppress(RuntimeError):  # its loop closed meanwhile
                    future_loop.call_soon_threadsafe(future.cancel)
                raise
    else:
        await anyio.lowlevel.checkpoint()
    return _settled_result(future)
