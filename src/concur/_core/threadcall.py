"""The thread call: the state one call's caller and its worker thread share, its
interrupt hooks, and the observation of its caller's cancellation."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import threading
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Final, final

import anyio

if TYPE_CHECKING:  # at run time anyio imports these on first use
    import anyio.from_thread
    import anyio.lowlevel

from . import handoff as _handoff
from .checks import fn_name
from .limits import take_token
from .log import logger

__all__ = [
    "ABANDONED",
    "DONE",
    "INTERRUPT_EVERY",
    "PENDING",
    "RUNNING",
    "ThreadCall",
    "check_cancelled",
    "current_async_library",
    "interrupt_in_background",
    "interrupt_with",
    "mark_worker_process",
    "observed",
    "returned_coroutine",
]


INTERRUPT_EVERY: Final = 0.1
"""Seconds between two rounds of interrupt hooks while a cancelled call's thread runs on."""

try:  # anyio's own "which library runs here" (no sniffio lookup of the event loop)
    current_async_library: Callable[[], str | None] = importlib.import_module(
        "anyio._core._eventloop"
    ).current_async_library
except (ImportError, AttributeError):  # pragma: no cover - anyio reorganised its internals
    import sniffio

    def current_async_library() -> str | None:
        try:
            return sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            return None


def returned_coroutine(fn: object, value: object) -> TypeError:
    """Close a stray coroutine returned by a sync callable and build the error for it."""
    close = getattr(value, "close", None)
    if close is not None:
        close()
    return TypeError(
        f"{fn_name(fn)} is a sync function that returned a coroutine; declare it "
        f"async def so concur runs it on the event loop instead of in a thread"
    )


PENDING: Final = 0
RUNNING: Final = 1
DONE: Final = 2
ABANDONED: Final = 3

#: the thread call running in this worker thread, for :func:`interrupt_with`
_local = threading.local()


@final
class ThreadCall:
    """The state shared by one thread call's caller and its worker thread.

    Interrupt hooks: ``hooks`` holds zero-argument callables, those of the handed-off
    arguments (from the handoff rules) and those :func:`interrupt_with` adds from the
    thread while its block runs. The thread only appends and removes (atomic list
    operations); the loop only iterates over a copy, so each sees a consistent list. Once
    the loop has called a hook, ``interrupted`` is set and the thread's outcome is
    discarded: the caller raises its own cancellation.
    """

    __slots__ = (
        "args",
        "cancel_register",
        "cleanups",
        "ended",
        "error",
        "fn",
        "hooks",
        "interrupted",
        "limiter",
        "lock",
        "state",
        "token",
        "waiting",
        "watch",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        cleanups: list[_handoff.Cleanup],
        hooks: list[_handoff.Hook],
    ) -> None:
        self.fn = fn
        self.args = args
        self.cleanups = cleanups
        self.hooks = hooks
        self.interrupted = False
        self.state: int = PENDING
        self.lock: threading.Lock | None = None
        self.limiter: anyio.CapacityLimiter | None = None
        self.token: anyio.lowlevel.EventLoopToken | None = None
        #: set on the loop once an abandoned thread has ended (made only when abandoning)
        self.ended: anyio.Event | None = None
        #: what an abandoned thread function raised
        self.error: BaseException | None = None
        #: the caller waits for the abandoned thread (abandon_on_cancel=False)
        self.waiting = False
        #: trio: the call's cancel register (set by the thread); asks to be watched
        self.cancel_register: list[Any] | None = None
        self.watch: Callable[[], None] | None = None

    def finished(self) -> bool:
        """Whether the thread function has returned (or will never run)."""
        return self.state == DONE

    def _call(self) -> Any:
        outer = getattr(_local, "call", None)
        _local.call = self
        try:
            result = self.fn(*self.args)
        finally:
            _local.call = outer
        if inspect.iscoroutine(result):
            raise returned_coroutine(self.fn, result)
        if self.cleanups:
            _handoff.check_result(result)
        return result

    def run(self) -> Any:
        """The function the worker thread runs (non-abandoning mode)."""
        self.state = RUNNING
        try:
            return self._call()
        finally:
            self.state = DONE
            if self.cleanups:
                _handoff.run_cleanups(self.cleanups)

    def run_abandonable(self) -> Any:
        """The function the worker thread runs when the caller may abandon it."""
        lock = self.lock
        assert lock is not None
        with lock:
            if self.state == ABANDONED:
                return None  # the caller left before we started; it cleaned up
            self.state = RUNNING
        try:
            return self._call()
        except BaseException as exc:
            if self.abandoned():
                self.error = exc
            raise
        finally:
            try:
                if self.cleanups:
                    _handoff.run_cleanups(self.cleanups)
            finally:
                with lock:
                    abandoned = self.abandoned()
                    self.state = DONE
                if abandoned:
                    self._tell_the_loop()

    def discard(self) -> None:
        """On the loop: the thread function will never run; run the cleanups here."""
        if self.cleanups:
            _handoff.run_cleanups(self.cleanups)

    def abandon(self) -> int:
        """On the loop: the caller leaves; returns the state the thread call was in.

        A call that had not started will not run (its cleanups run now); a running one is
        left to finish on its own, and tells the loop when it has (:attr:`ended`).
        """
        assert self.lock is not None
        if self.ended is None:
            self.ended = anyio.Event()
        with self.lock:
            state = self.state
            if state != DONE:
                self.state = ABANDONED
        if state == PENDING:
            self.discard()
        return state

    def abandoned(self) -> bool:
        """Whether the caller has left without the result (set from the event loop)."""
        return self.state == ABANDONED

    def interrupt(self) -> None:
        """On the loop: call every interrupt hook; a hook's failure is logged, not raised."""
        hooks = list(self.hooks)
        if hooks:
            self.interrupted = True
        for hook in hooks:
            try:
                hook()
            except Exception:
                logger().warning(
                    "the interrupt hook %r of a cancelled thread call failed", hook, exc_info=True
                )

    async def wait_interrupting(self) -> None:
        """On the loop, shielded: interrupt now and every ``INTERRUPT_EVERY`` seconds
        until the abandoned thread function has returned."""
        ended = self.ended
        assert ended is not None
        with anyio.CancelScope(shield=True):
            while not ended.is_set():
                self.interrupt()
                with anyio.move_on_after(INTERRUPT_EVERY):
                    await ended.wait()

    def outcome_discarded(self) -> BaseException | None:
        """After the thread has returned: its exception if it still counts, else None.

        Once a hook has been called, the thread's result or failure (an
        ``InterruptException``, say) is discarded: it is logged at DEBUG.
        """
        error, self.error = self.error, None
        if self.interrupted:
            if error is not None:
                logger().debug("interrupted thread call %r failed", self.fn, exc_info=error)
            return None
        return error

    def _tell_the_loop(self) -> None:
        # in the thread, once an abandoned call has returned: release concur's own token
        # (the generic path), set ``ended`` for a caller waiting for the thread
        token = self.token
        if token is None:
            return
        try:
            anyio.from_thread.run_sync(self._ended_on_loop, token=token)
        except Exception:  # the loop is gone: its limiter and waiters went with it
            logger().debug("could not tell the loop that %r ended", self.fn, exc_info=True)

    def _ended_on_loop(self) -> None:
        if self.limiter is not None:
            self.limiter.release_on_behalf_of(self)
        if self.ended is not None:
            self.ended.set()
        if not self.waiting and self.error is not None:  # nobody will read it
            logger().debug("abandoned thread call %r failed", self.fn, exc_info=self.error)
            self.error = None


@contextlib.contextmanager
def interrupt_with(hook: Callable[[], object]) -> Generator[None]:
    """Register *hook* to interrupt the current thread call while the block runs.

    For resources that a thread function opens itself, which no handoff rule can see: if
    the call that started this thread is cancelled (fail-fast, a timeout, an outside
    cancellation, Ctrl-C) while the block runs, concur calls ``hook()`` from the event
    loop's thread, at once and then every 100 ms until the thread function returns, just
    like a handoff rule's interrupt hook (see :func:`concur.handoff.register`); the
    caller then gets its own cancellation, and what the thread returns or raises is
    discarded. The hook must be idempotent and must not block; an exception it raises is
    logged at WARNING on the ``concur`` logger::

        def query(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
            cur = con.cursor()
            with cur, concur.interrupt_with(cur.interrupt):
                return cur.execute(HEAVY_SQL).pl()

    Outside a thread that concur started for a call (plain sync code, a thread of your
    own) it does nothing, since nothing there could cancel the code: a library can use it
    unconditionally.

    Args:
        hook: a function of no arguments.

    Raises:
        TypeError: *hook* is not callable.
    """
    if not callable(hook):
        raise TypeError(f"interrupt_with() takes a function, got {type(hook).__name__} {hook!r}")
    call: ThreadCall | None = getattr(_local, "call", None)
    if call is None:
        yield
        return
    call.hooks.append(hook)
    if call.watch is not None:
        call.watch()  # trio: have the loop watch this call's caller for cancellation
    try:
        yield
    finally:
        call.hooks.remove(hook)


async def observed(
    thread_call: ThreadCall,
    abandon_on_cancel: bool,
    own_limiter: anyio.CapacityLimiter | None,
    start: Callable[[], Awaitable[Any]],
) -> Any:
    """Run *thread_call* through *start*, which abandons the thread when the caller is cancelled.

    Then, with the thread still running: ``abandon_on_cancel=True`` interrupts it (now, and
    every ``INTERRUPT_EVERY`` seconds in the background) and leaves; ``False`` interrupts
    it the same way while waiting, shielded, until the thread function has returned.
    """
    thread_call.lock = threading.Lock()
    thread_call.token = anyio.lowlevel.current_token()
    if own_limiter is not None:
        await take_token(own_limiter, thread_call, thread_call.discard)  # cancelled: fn never runs
        thread_call.limiter = own_limiter
    try:
        result = await start()
    except BaseException:
        thread_call.waiting = not abandon_on_cancel
        state = thread_call.abandon()
        if state != RUNNING:
            if own_limiter is not None:
                own_limiter.release_on_behalf_of(thread_call)
            raise
        # the thread runs on, and releases concur's own token (if any) when it ends
        if abandon_on_cancel:
            interrupt_in_background(thread_call)
            raise
        await thread_call.wait_interrupting()
        error = thread_call.outcome_discarded()
        if error is not None:  # the thread's own failure (or check_cancelled's) wins
            raise error from None
        raise
    if own_limiter is not None:
        own_limiter.release_on_behalf_of(thread_call)
    if not abandon_on_cancel:
        # a caller cancelled as its thread returned gets the cancellation now
        await anyio.lowlevel.checkpoint_if_cancelled()
    return result


def interrupt_in_background(thread_call: ThreadCall) -> None:
    """Interrupt an abandoned call now and every ``INTERRUPT_EVERY`` seconds until its
    thread has returned, from the event loop, without anyone waiting."""
    thread_call.interrupt()
    ended = thread_call.ended
    if ended is None:  # pragma: no cover - abandon() made it
        return
    backend = current_async_library()
    if backend == "asyncio":
        import asyncio

        loop = asyncio.get_running_loop()

        def again() -> None:
            if not ended.is_set():
                thread_call.interrupt()
                loop.call_later(INTERRUPT_EVERY, again)

        loop.call_later(INTERRUPT_EVERY, again)
    elif backend == "trio":
        import trio

        async def rounds() -> None:
            while not ended.is_set():
                with trio.move_on_after(INTERRUPT_EVERY):
                    await ended.wait()
                if not ended.is_set():
                    thread_call.interrupt()

        trio.lowlevel.spawn_system_task(rounds, name=f"concur interrupts {fn_name(thread_call.fn)}")


def check_cancelled() -> None:
    """Raise the backend's cancellation exception if this thread's caller was cancelled.

    Call it from inside a worker thread started by :func:`to_thread` (or by
    ``anyio.to_thread.run_sync``) so that long sync work stops early when the task waiting
    for it is cancelled. It cannot see a cancellation that a shielded scope around the
    caller hides.

    In the worker process of a :class:`concur.ProcessPool` call it returns ``None``: a
    process cannot see its caller's cancellation (``kill_on_cancel=True`` ends it instead).

    Raises:
        RuntimeError: called from a thread that :func:`to_thread` did not start.
    """
    if _in_worker_process:
        return
    anyio.from_thread.check_cancelled()


#: set in a worker process of a ProcessPool, by the function that runs each call there
_in_worker_process = False


def mark_worker_process() -> None:
    """Tell :func:`check_cancelled` that this process is a ProcessPool's worker."""
    global _in_worker_process
    _in_worker_process = True
