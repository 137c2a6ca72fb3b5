"""Executors: :class:`ThreadPool` and :class:`ProcessPool`, each with its own cap.

Both are executors in one shape, :class:`Executor`: a single method, ``async run(fn, /,
*args)``, that runs a sync function somewhere else and returns its result. A thread pool
runs it in a worker thread through :func:`concur.to_thread` (hard cap, handoff); a process
pool in a worker process through ``anyio.to_process.run_sync`` (pickled arguments).
``concur.scope(executor=...)`` and a Dask executor are meant to take this shape later.

Both are async context managers: ``run`` works inside the ``async with`` block, and
leaving the block waits for the calls still running.
"""

from __future__ import annotations

import enum
import pickle
import sys
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final, Protocol, Self, TypeVar, TypeVarTuple, cast, final

import anyio
import anyio.lowlevel
import anyio.to_process
import attrs

import concur

from ._core.checks import check_function, check_int, fn_name, is_async_callable
from ._core.threadcall import mark_worker_process

__all__ = ["Executor", "PoolStatistics", "ProcessPool", "ThreadPool"]

T = TypeVar("T")
R = TypeVar("R")
Ts = TypeVarTuple("Ts")


class Executor(Protocol):
    """What runs a sync function somewhere else: a thread, a process, a cluster.

    Implementer's contract:

    - ``await run(fn, *args)`` calls ``fn(*args)`` once and returns what it returned, or
      raises what it raised (unwrapped). Keyword arguments travel in a
      ``functools.partial``.
    - It is bounded: at most a fixed number of calls run at once; the others wait, in
      first-come, first-served order, without running.
    - Cancellation: a call cancelled before it starts never runs. A call cancelled while it
      runs either waits for it to end and then raises the cancellation, or stops it (kills
      its worker) and raises at once; the executor documents which. It never returns a
      result to a cancelled caller, and never leaves work running unowned.
    - Misuse is refused before anything is sent: a coroutine object, an async function, or
      an argument the executor cannot carry raises ``TypeError`` naming it.
    """

    async def run(self, fn: Callable[[*Ts], T], /, *args: *Ts) -> T:
        """Run ``fn(*args)`` and return its result (see the class for the contract)."""
        ...


@final
@attrs.frozen
class PoolStatistics:
    """A snapshot of a :class:`ThreadPool` or a :class:`ProcessPool`.

    A call cancelled or refused (unpicklable, say) counts in neither ``completed`` nor
    ``failed``.
    """

    max_workers: int
    """The most calls the pool runs at once."""
    running: int
    """Calls running now (each holds a worker: a thread or a process)."""
    completed: int
    """Calls that returned."""
    failed: int
    """Calls whose function raised (or whose worker process died)."""


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class _Pool:
    """What both pools share: the cap, the lifecycle and the counts."""

    # Invariant (all of it touched only from the event loop's thread, with no await between
    # a check and its update): _in_flight is the number of run() calls past their checks
    # and not yet returned; once _state is CLOSED no call passes the checks, so _in_flight
    # only falls, and _idle (made by __aexit__ when calls are in flight) is set when it
    # reaches 0. _limiter's borrowed tokens are the calls holding a worker now.

    _kind = "pool"

    def __init__(self, max_workers: int) -> None:
        self._max_workers: Final = check_int(max_workers, "max_workers", minimum=1)
        self._limiter: anyio.CapacityLimiter | None = None
        self._state = _State.UNOPENED
        self._in_flight = 0
        self._idle: anyio.Event | None = None  # set when _in_flight drops to 0 while closing
        self._completed = 0
        self._failed = 0

    @property
    def max_workers(self) -> int:
        """The most calls this pool runs at once."""
        return self._max_workers

    async def __aenter__(self) -> Self:
        if self._state is not _State.UNOPENED:
            raise RuntimeError(
                f"this {self._kind} was already used in an async with block and cannot be "
                f"reopened: create a new one"
            )
        self._limiter = anyio.CapacityLimiter(self._max_workers)
        self._state = _State.OPEN
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop accepting calls, then wait for the calls still running.

        Cancellation: the wait is cancellable; the calls themselves belong to the tasks that
        made them, which wait for their own (see :meth:`run`).
        """
        self._state = _State.CLOSED
        if self._in_flight:
            self._idle = anyio.Event()
            await self._idle.wait()

    def statistics(self) -> PoolStatistics:
        """A snapshot of the pool's cap and counts."""
        limiter = self._limiter
        return PoolStatistics(
            max_workers=self._max_workers,
            running=0 if limiter is None else int(limiter.borrowed_tokens),
            completed=self._completed,
            failed=self._failed,
        )

    def _check_call(self, fn: object) -> anyio.CapacityLimiter:
        where = f"{self._kind}.run"
        check_function(fn, where, fix="pool.run")
        if is_async_callable(fn):
            raise TypeError(
                f"{where}() runs sync functions; {fn_name(fn)} is an async function: "
                f"await it directly"
            )
        if self._state is _State.UNOPENED or self._limiter is None:
            raise RuntimeError(
                f"{where}() called before the pool was entered: write "
                f"async with concur.{self._kind}(...) as pool: await pool.run(...)"
            )
        if self._state is _State.CLOSED:
            raise anyio.ClosedResourceError(f"{where}() called after the pool was closed")
        return self._limiter

    async def _accounted(self, call: Awaitable[R]) -> R:
        """Await *call* as one of this pool's calls: in flight while it runs (the exit
        waits for it), then counted as completed or, unless cancelled, failed."""
        self._in_flight += 1
        try:
            result = await call
        except BaseException as exc:
            if not isinstance(exc, anyio.get_cancelled_exc_class()):
                self._failed += 1
            raise
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()
        self._completed += 1
        return result


@final
class ThreadPool(_Pool):
    """A pool of at most *max_workers* worker threads, as an async context manager.

    ``await pool.run(fn, *args)`` is :func:`concur.to_thread` under the pool's own
    ``anyio.CapacityLimiter(max_workers)``: a hard cap (a token is held until the thread
    has returned, even when its caller was cancelled), and the arguments handed off by the
    ambient policy. The threads are those of :func:`concur.to_thread`: an idle one is kept
    for reuse and is not a leak.

    Args:
        max_workers: the most calls running at once, at least 1.

    Example::

        async with concur.ThreadPool(4) as pool:
            sizes = await concur.gather(*(functools.partial(pool.run, size_of, p) for p in paths))
    """

    _kind = "ThreadPool"

    async def run(self, fn: Callable[[*Ts], T], /, *args: *Ts) -> T:
        """Run the sync ``fn(*args)`` in a worker thread of this pool; return its result.

        Waits for a free worker first (first-come, first-served).

        Cancellation: as :func:`concur.to_thread` with ``abandon_on_cancel=False``. A call
        cancelled while it waits for a worker never runs; a call cancelled while it runs
        waits until *fn* returns (code in *fn* can stop early through
        :func:`concur.check_cancelled`), then raises the cancellation.

        Raises:
            TypeError: *fn* is a coroutine object, not callable, or async.
            RuntimeError: the pool was not entered.
            anyio.ClosedResourceError: the pool's block has exited.
        """
        limiter = self._check_call(fn)
        return await self._accounted(concur.to_thread(fn, *args, limiter=limiter))


# --- ProcessPool ------------------------------------------------------------------------------


class _MissingMainGuard(RuntimeError):  # private; raised in a worker process
    """ProcessPool.run() was called while a worker process imported the main module."""


_GUARD_MESSAGE: Final = (
    "ProcessPool.run() was called while a worker process was importing your main module: "
    "a worker process imports the main script (as __mp_main__, as multiprocessing does) "
    "so that its functions can be found, and your script starts the pool at import. Put "
    'the code that starts it under  if __name__ == "__main__":  (for example '
    'if __name__ == "__main__": concur.run(main))'
)


def _importing_main() -> bool:
    """Whether this is an anyio worker process importing the parent's main module.

    anyio's worker deletes ``sys.modules["__main__"]`` and runs the main script as
    ``__mp_main__``; only then is there an ``__mp_main__`` without a ``__main__``.
    """
    return "__main__" not in sys.modules and "__mp_main__" in sys.modules


def _describe(value: object) -> str:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the pickling error
        text = "<unrepresentable>"
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"


def _pickle_call(fn: object, args: tuple[object, ...]) -> bytes:
    """The pickled ``(fn, args)``, or a ``TypeError`` naming what cannot be pickled."""
    try:
        return pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as whole:  # find the culprit, then say which it is
        for what, value in [("fn", fn), *((f"argument {i}", a) for i, a in enumerate(args))]:
            try:
                pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # reported as the cause
                hint = ""
                if what == "fn":
                    hint = (
                        ": a lambda, a local function or a method of an unpicklable object "
                        "cannot be sent; define the function at the top level of a module"
                    )
                raise TypeError(
                    f"ProcessPool.run() sends fn and its arguments to a worker process by "
                    f"pickling them, and {what} ({_describe(value)}) cannot be pickled"
                    f"{hint} ({exc})"
                ) from exc
        raise TypeError(
            f"ProcessPool.run() could not pickle fn and its arguments together: {whole}"
        ) from whole


def _unpickle_and_call(payload: bytes) -> object:
    """In the worker process: call the pickled ``fn(*args)``."""
    mark_worker_process()  # concur.check_cancelled() returns None here
    fn, args = pickle.loads(payload)
    return fn(*args)


def _guard_error_in(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, _MissingMainGuard):
            return True
        if isinstance(exc, BaseExceptionGroup):
            inners = cast("tuple[BaseException, ...]", exc.exceptions)  # pyright: ignore[reportUnknownMemberType]
            return any(_guard_error_in(inner) for inner in inners)
        exc = exc.__cause__ or exc.__context__
    return False


@final
class ProcessPool(_Pool):
    """A pool of at most *max_workers* worker processes, as an async context manager.

    ``await pool.run(fn, *args)`` runs the sync ``fn(*args)`` in a worker process through
    ``anyio.to_process.run_sync``, under the pool's own ``anyio.CapacityLimiter(
    max_workers)``: GIL-holding Python code then runs in parallel. *fn* and *args* are
    pickled (so handoff does not apply: the worker gets copies); *fn* must be a function
    defined at the top level of an importable module.

    Worker processes are anyio's: started on demand, reused, and an idle one is kept (up to
    five minutes) for the next call of any pool in the same event-loop run. An idle worker
    is not a leak, as an idle thread is not.

    **The main-module guard.** A worker process imports the script that started the program
    (as ``__mp_main__``, as ``multiprocessing`` does) so that functions defined there can
    be found. A script must therefore start its event loop under
    ``if __name__ == "__main__":``; without it, the worker would start the program again:
    :meth:`run` detects this and raises ``RuntimeError`` saying so.

    Args:
        max_workers: the most calls running at once (worker processes busy), at least 1.
        kill_on_cancel: when ``True``, a call cancelled while it runs kills its worker
            process (SIGKILL; ``TerminateProcess`` on Windows) and raises at once; when
            ``False`` (the default), the caller waits for the call to end, then raises the
            cancellation.
    """

    _kind = "ProcessPool"

    def __init__(self, max_workers: int, *, kill_on_cancel: bool = False) -> None:
        super().__init__(max_workers)
        if not isinstance(kill_on_cancel, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"kill_on_cancel must be True or False, got {kill_on_cancel!r}")
        self._kill_on_cancel: Final = kill_on_cancel

    @property
    def kill_on_cancel(self) -> bool:
        """Whether a cancelled call kills its worker process."""
        return self._kill_on_cancel

    async def run(self, fn: Callable[[*Ts], T], /, *args: *Ts) -> T:
        """Run the sync ``fn(*args)`` in a worker process of this pool; return its result.

        *fn* and *args* are pickled first, before waiting for a worker: what cannot be
        pickled raises ``TypeError`` naming it, and nothing is sent. Then the call waits for
        a free worker (first-come, first-served). What *fn* raises is raised here (a
        pickled copy; its traceback stays in the worker).

        Cancellation: a call cancelled while it waits for a worker never runs. A call
        cancelled while it runs kills its worker process and raises at once with
        ``kill_on_cancel=True``; otherwise the caller waits until *fn* returns (its result
        is discarded) and then raises the cancellation. :func:`concur.check_cancelled`
        cannot see the caller from a worker process (it returns ``None``).

        Raises:
            TypeError: *fn* is a coroutine object, not callable, or async; or *fn* or an
                argument cannot be pickled.
            RuntimeError: the pool was not entered; or the main script lacks the
                ``if __name__ == "__main__":`` guard (see the class).
            anyio.ClosedResourceError: the pool's block has exited.
            anyio.BrokenWorkerProcess: the worker process died or could not start.
        """
        if _importing_main():
            raise _MissingMainGuard(_GUARD_MESSAGE)
        limiter = self._check_call(fn)
        payload = _pickle_call(fn, args)
        result = await self._accounted(self._in_process(payload, limiter))
        return result  # type: ignore[return-value]  # what fn returned, through pickle

    async def _in_process(self, payload: bytes, limiter: anyio.CapacityLimiter) -> object:
        try:
            result = await anyio.to_process.run_sync(
                _unpickle_and_call, payload, cancellable=self._kill_on_cancel, limiter=limiter
            )
        except anyio.BrokenWorkerProcess as exc:
            if _guard_error_in(exc.__cause__):
                raise RuntimeError(_GUARD_MESSAGE) from None
            raise
        # without kill_on_cancel the call ran shielded: a cancellation that came while it
        # ran is raised now, as for a thread call
        await anyio.lowlevel.checkpoint_if_cancelled()
        return result
