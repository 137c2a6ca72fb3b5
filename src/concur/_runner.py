"""``Runner``: one event loop on one background thread, for sync callers in any thread."""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import contextvars
import enum
import functools
import itertools
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar, TypeVarTuple, cast, final, overload

import anyio
import anyio.from_thread
import anyio.lowlevel

from ._core import check_async_function, check_function, check_int, check_timeout, fn_name
from ._loops import (
    call_soon,
    check_backend,
    context_for_another_loop,
    in_worker_thread,
    on_loop_thread_error,
    wait_event,
)
from ._map import map_async
from ._runner_loop import (
    LoopCall,
    LoopState,
    run_loop_call,
    settle_dropped,
    start_thread,
    stop_loop,
)

__all__ = ["Runner"]

T = TypeVar("T")
Item = TypeVar("Item")
Ts = TypeVarTuple("Ts")

logger: Final = logging.getLogger("concur")

_counter = itertools.count(1)


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


# --- interpreter exit --------------------------------------------------------------------------

_open_runners: set[Runner] = set()
_open_lock = threading.Lock()
_atexit_registered = False


def _register(runner: Runner) -> None:
    global _atexit_registered
    with _open_lock:
        _open_runners.add(runner)
        if not _atexit_registered:
            atexit.register(_close_open_runners)
            _atexit_registered = True


def _unregister(runner: Runner) -> None:
    with _open_lock:
        _open_runners.discard(runner)


def _close_open_runners() -> None:
    with _open_lock:
        runners = list(_open_runners)
    for runner in runners:
        try:
            runner.close()
        except Exception:
            logger.exception("could not close %r at interpreter exit", runner)


# --- the runner ------------------------------------------------------------------------------


@final
class Runner:
    """One event loop on one background thread, for sync code in any thread.

    The loop starts on first use and runs until :meth:`close` (or the end of a ``with``
    block, or interpreter exit for a runner never closed). All calls share it: no loop,
    thread or portal is started per call. A call is handed to the loop without a round
    trip, so a runner also works from sync code on a trio thread, where anyio's blocking
    portals refuse to block. It is the way into async code from a thread concur did not
    start, from a notebook cell (keep one across cells), or from a script that calls async
    code many times.

    Each of :meth:`run`, :meth:`submit` and :meth:`map` runs its function as a task on the
    loop, in a copy of the calling thread's ``contextvars`` context, so the
    :func:`concur.scope` settings in force at the call apply inside. A limiter is bound
    to one loop, so the one in force at a call from another thread (say a
    ``concur.scope(thread_limit=4)`` entered in a notebook cell) caps the calls on the
    runner's loop through a limiter of as many tokens, shared by every call that brings
    it. Any number of threads may use one runner at once.

    Args:
        backend: ``"asyncio"`` or ``"trio"``.
        backend_options: passed to :func:`anyio.run` (``{"use_uvloop": True}``, ...).
        name: the name of the loop thread (default ``"concur.Runner-<n>"``).
        shutdown_timeout: how long :meth:`close` lets submitted work finish: ``None``
            (the default) waits without limit; a number of seconds cancels what is still
            running after that long, then waits for its cleanup.

    Raises:
        ValueError: an unknown backend or a negative *shutdown_timeout*.

    Example::

        with concur.Runner("trio") as runner:
            page = runner.run(fetch, url)
            pages = runner.map(fetch, urls, limit=4)
    """

    __slots__ = (
        "__weakref__",
        "_backend",
        "_backend_options",
        "_closed",
        "_lock",
        "_loop",
        "_name",
        "_shutdown_timeout",
        "_state",
        "_thread",
        "_thread_ended",
    )

    def __init__(
        self,
        backend: Literal["asyncio", "trio"] = "asyncio",
        *,
        backend_options: dict[str, Any] | None = None,
        name: str | None = None,
        shutdown_timeout: float | None = None,
    ) -> None:
        check_backend(backend)
        check_timeout(shutdown_timeout, "shutdown_timeout")
        self._backend = backend
        self._backend_options = backend_options
        self._name = name if name is not None else f"concur.Runner-{next(_counter)}"
        self._shutdown_timeout = shutdown_timeout
        self._lock = threading.Lock()
        self._state = _State.NEW
        self._closed = threading.Event()
        self._loop: LoopState | None = None
        self._thread: threading.Thread | None = None
        # set by the loop thread as it ends; waited for instead of an interruptible
        # join(): a Ctrl-C in Thread.join() marks a live thread as stopped (CPython 3.11)
        self._thread_ended = threading.Event()

    def __repr__(self) -> str:
        return f"<concur.Runner {self._name!r} backend={self._backend!r} {self._state.value}>"

    @property
    def backend(self) -> str:
        """The name of the runner's async backend."""
        return self._backend

    @property
    def name(self) -> str:
        """The name of the runner's loop thread."""
        return self._name

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._state in (_State.CLOSING, _State.CLOSED)

    @property
    def active_calls(self) -> int:
        """How many calls' tasks have not ended yet, cleanup included (from any thread)."""
        loop = self._loop
        return 0 if loop is None else loop.active

    # --- context manager

    def __enter__(self) -> Self:
        if self.closed:
            raise self._closed_error()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- the calls

    def run(self, fn: Callable[[*Ts], Awaitable[T]], /, *args: *Ts) -> T:
        """Run the async function *fn* on the runner's loop; block until it returns.

        Blocks the calling thread (which may itself run another event loop, such as a
        notebook's) until *fn* has finished, and returns its value or raises its exception.

        **Ctrl-C.** A ``KeyboardInterrupt`` in the calling thread while it waits (a real
        SIGINT interrupts the wait) cancels the task on the loop, waits for its cleanup,
        then is re-raised; a second one during that cleanup stops the wait at once (the
        cleanup goes on, on the loop). The runner stays usable.

        Raises:
            RuntimeError: called on the runner's own loop thread (it would deadlock:
                ``await fn(*args)`` there, or use :meth:`submit`), or the runner is closed.
            concurrent.futures.CancelledError: the task was cancelled by :meth:`close`
                after *shutdown_timeout*.
            TypeError: *fn* is not callable, or is not async.
        """
        check_async_function(fn, "runner.run")
        self._refuse_own_thread("Runner.run()", "await fn(*args) there instead")
        return self._call(fn, args)

    def submit(
        self, fn: Callable[[*Ts], Awaitable[T]], /, *args: *Ts
    ) -> concurrent.futures.Future[T]:
        """Start the async function *fn* on the runner's loop; return its future at once.

        Does not block (beyond starting the loop on first use). The future holds *fn*'s
        value or exception; ``future.cancel()`` cancels the task on the loop (the future
        is cancelled at once; the task's cleanup then runs on the loop, and :meth:`close`
        waits for it). Allowed on the runner's own loop thread, but waiting there for the
        future's result would deadlock: ``await concur.wait_future(future)`` instead.

        Raises:
            RuntimeError: the runner is closed.
            TypeError: *fn* is not callable, or is not async.
        """
        check_async_function(fn, "runner.submit")
        call = self._start(fn, args)
        future = call.future

        def on_done(future: concurrent.futures.Future[T]) -> None:
            if future.cancelled():
                self._cancel(call)

        future.add_done_callback(on_done)
        return future

    @overload
    def map(
        self, fn: Callable[[Item], Awaitable[T]], items: Iterable[Item], *, limit: int = 10
    ) -> list[T]: ...

    @overload
    def map(
        self, fn: Callable[[Item], T], items: Iterable[Item], *, limit: int = 10
    ) -> list[T]: ...

    def map(
        self,
        fn: Callable[[Item], Awaitable[T]] | Callable[[Item], T],
        items: Iterable[Item],
        *,
        limit: int = 10,
    ) -> list[T]:
        """Call *fn* on every item on the runner's loop, at most *limit* at once; block.

        :func:`concur.map_async` on the runner's loop: *fn* may be async (a task per call)
        or sync (run in a worker thread via :func:`concur.call`, under the ambient limiter
        and handoff policy). *items* is consumed in the calling thread first. Fail-fast:
        the first failure cancels the other calls; the one exception is then raised as it
        is, or an :class:`ExceptionGroup` when several calls failed on their own.

        Blocks like :meth:`run`, with the same Ctrl-C behaviour.

        Returns:
            The results, in the order of *items*.

        Raises:
            RuntimeError: on the runner's own loop thread, or the runner is closed.
            TypeError: *fn* is not callable, or *limit* is not an int.
            ValueError: *limit* is below 1.
        """
        check_function(fn, "runner.map", args="items")
        check_int(limit, "limit")
        self._refuse_own_thread("Runner.map()", "await concur.map_async(...) there instead")
        values = list(items)
        run_map = functools.partial(map_async, fn, values, limit=limit)
        return cast("list[T]", self._call(run_map, ()))

    def close(self) -> None:
        """Close the runner: let its work finish, end its loop and join its thread.

        Idempotent; a runner never started closes at once. New calls are refused from
        the start. Submitted work is waited for without limit, or cancelled after
        *shutdown_timeout* seconds (then its cleanup is waited for). When it returns,
        the loop thread is gone. A second ``close()`` from another thread waits for the
        first.

        **Ctrl-C.** A ``KeyboardInterrupt`` while ``close`` waits for submitted work
        cancels that work, waits for its cleanup and the end of the loop thread, then is
        re-raised; a second one during that cleanup raises at once (the loop thread ends
        by itself once the cleanup has finished). Either way the runner is closed.

        Raises:
            RuntimeError: called on the runner's own loop thread, or in a worker thread
                of that loop (it would wait for itself).
        """
        self._refuse_own_thread("Runner.close()", "close it from another thread")
        self._refuse_own_worker_thread()
        mine = False  # whether this call is the one that stops the loop
        try:
            with self._lock:
                state = self._state
                if state is _State.NEW:
                    self._state = _State.CLOSED
                    self._closed.set()
                    return
                if state is _State.RUNNING:
                    self._state = _State.CLOSING
                    mine = True
            if not mine:
                wait_event(self._closed)
                return
            self._stop(cancel=False)
        except KeyboardInterrupt:
            if mine:
                self._stop(cancel=True)  # a second Ctrl-C leaves from here at once
            raise
        finally:
            if mine:
                with self._lock:
                    self._state = _State.CLOSED
                _unregister(self)
                self._closed.set()

    # --- machinery

    def _closed_error(self) -> RuntimeError:
        return RuntimeError(f"{self!r} is closed; create a new concur.Runner")

    def _refuse_own_thread(self, what: str, instead: str) -> None:
        loop = self._loop
        if loop is not None and loop.ident == threading.get_ident():
            raise on_loop_thread_error(f"{what} on {self._name!r}", instead)

    def _refuse_own_worker_thread(self) -> None:
        """Refuse ``close()`` in a worker thread of the runner's loop (a task waits for it)."""
        loop = self._loop
        if loop is None or not in_worker_thread():
            return
        try:
            parent = anyio.from_thread.run_sync(anyio.lowlevel.current_token)
        except anyio.RunFinishedError:
            return
        if parent.native_token is loop.token.native_token:
            raise RuntimeError(
                f"Runner.close() on {self._name!r} was called in a worker thread of that "
                f"runner's own loop, where it would wait for the task waiting for this thread "
                f"(a deadlock); close the runner from the thread that created it"
            )

    def _stop(self, *, cancel: bool) -> None:
        """Stop the loop (cancelling what runs, if *cancel*) and wait for its thread to end."""
        loop, thread = self._loop, self._thread
        assert loop is not None and thread is not None
        with contextlib.suppress(anyio.RunFinishedError):
            call_soon(loop.token, functools.partial(stop_loop, loop, cancel=cancel))
        wait_event(self._thread_ended)
        thread.join()  # it is ending

    def _ensure_running(self) -> LoopState:
        """Start the loop on first use (under the lock); refuse if closed."""
        with self._lock:
            if self._state is _State.RUNNING:
                assert self._loop is not None
                return self._loop
            if self._state is not _State.NEW:
                raise self._closed_error()
            started: concurrent.futures.Future[LoopState] = concurrent.futures.Future()
            thread = threading.Thread(
                target=self._thread_main, args=(started,), name=self._name, daemon=True
            )
            interrupted = start_thread(thread, started)
            error = started.exception()
            if error is not None:
                wait_event(self._thread_ended)
                thread.join()
                self._thread_ended.clear()  # a later call tries again
                raise error
            self._loop = started.result()
            self._thread = thread
            self._state = _State.RUNNING
        _register(self)
        if interrupted:  # the loop is up, and serves later calls; this one is given up
            raise KeyboardInterrupt
        return self._loop

    def _thread_main(self, started: concurrent.futures.Future[LoopState]) -> None:
        """The loop thread: runs the loop until :meth:`close` stops it."""
        try:
            anyio.run(
                self._serve, started, backend=self._backend, backend_options=self._backend_options
            )
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)  # the loop could not start
            else:
                logger.exception("the loop of %r failed", self)
        finally:
            if started.done() and started.exception() is None:  # the loop ran, and ended
                error = self._closed_error()
                settle_dropped(started.result(), error)
            self._thread_ended.set()

    async def _serve(self, started: concurrent.futures.Future[LoopState]) -> None:
        """The loop's main task: holds every call's task until the runner closes."""
        async with anyio.create_task_group() as tg:
            loop = LoopState(tg)
            started.set_result(loop)
            await loop.stop.wait()
            if self._shutdown_timeout is not None:
                with anyio.move_on_after(self._shutdown_timeout):
                    await loop.wait_idle()
                tg.cancel_scope.cancel("the concur.Runner is closing")

    def _start(self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> LoopCall[T]:
        """Hand a new call to the loop, without waiting (``submit``)."""
        loop = self._ensure_running()
        call = LoopCall(fn, args, self._context(loop))
        try:
            self._hand_over(loop, call)
        except BaseException:
            self._cancel(call)  # Ctrl-C in the middle: the call must not run unobserved
            raise
        return call

    @staticmethod
    def _context(loop: LoopState) -> contextvars.Context:
        """A copy of the caller's context; from another thread, with its limiter localised."""
        if loop.ident == threading.get_ident():
            return contextvars.copy_context()
        return context_for_another_loop()

    def _hand_over(self, loop: LoopState, call: LoopCall[Any]) -> None:
        if loop.ident == threading.get_ident():
            self._spawn(loop, call)
            return
        with loop.handed_lock:
            if loop.ended:
                raise self._closed_error()
            loop.handed.add(call)
        try:
            call_soon(loop.token, lambda: self._spawn(loop, call))
        except anyio.RunFinishedError:
            with loop.handed_lock:
                loop.handed.discard(call)
            raise self._closed_error() from None

    def _spawn(self, loop: LoopState, call: LoopCall[Any]) -> None:
        """Start *call*'s task (on the loop thread; never raises: it would kill the loop)."""
        with loop.handed_lock:
            loop.handed.discard(call)
        call.spawned = True
        try:
            if loop.stop.is_set():
                raise self._closed_error()
            loop.tg.start_soon(run_loop_call, loop, call, name=f"{self._name}:{fn_name(call.fn)}")
            loop.active += 1
        except BaseException as exc:
            call.settle_exception(exc)
            call.done.set()

    def _cancel(self, call: LoopCall[Any]) -> None:
        """Cancel *call*'s task, from any thread, without waiting."""
        with call.lock:
            if call.cancel_requested:
                return
            call.cancel_requested = True
            scope = call.scope
        loop = self._loop
        if scope is None or loop is None:
            return  # not started yet: it is cancelled as soon as it starts
        if loop.ident == threading.get_ident():
            scope.cancel()
            return
        with contextlib.suppress(anyio.RunFinishedError):
            call_soon(loop.token, scope.cancel)

    def _call(self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
        """Run a call and block until it is done (``run``, ``map``; Ctrl-C: see ``run``)."""
        loop = self._ensure_running()
        call = LoopCall(fn, args, self._context(loop))
        try:
            self._hand_over(loop, call)
            wait_event(call.done)
        except KeyboardInterrupt:
            # a Ctrl-C may land before, during or after the hand-over: cancel the call,
            # wait until the loop has seen every call handed to it so far (its queue is
            # FIFO), then for the cleanup of the task if it was started at all
            self._cancel(call)
            seen = threading.Event()
            with contextlib.suppress(anyio.RunFinishedError):
                call_soon(loop.token, seen.set)
                wait_event(seen)  # a second Ctrl-C leaves from here or below at once
            if call.spawned:
                wait_event(call.done)
            raise
        return call.future.result()
