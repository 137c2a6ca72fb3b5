"""``WorkerPool``: a fixed number of workers fed by a bounded queue, with triggers,
statistics, a results stream and a graceful shutdown."""

from __future__ import annotations

import contextvars
import inspect
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar, TypeVarTuple, final, overload

import anyio
import anyio.lowlevel

import concur
from concur._core.checks import check_function, check_int, check_number, fn_name

from ._workers_job import Job, JobStatus, WorkerPoolStatistics, logger
from ._workers_queue import JobQueue, Results
from ._workers_trigger import Trigger

__all__ = ["Job", "JobStatus", "Trigger", "WorkerPool", "WorkerPoolStatistics"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


@final
class WorkerPool(JobQueue):
    """Run jobs on at most *workers* workers, fed by a queue of at most *queue_size* jobs.

    An async context manager::

        async with concur.WorkerPool(workers=4) as pool:
            job = await pool.submit(fetch, url)
            page = await job

    A job is a sync function (run in a thread through :func:`concur.call`, under the
    ambient limiter if a :func:`concur.scope` or :class:`concur.TaskGroup` set one, else
    under the pool's own limiter of *workers* tokens), an async function, or a coroutine
    object. Each runs in a copy of the context it was submitted in. A job's failure does
    not affect the pool or the other jobs: it is kept in its :class:`Job` (and passed to
    *on_error*).

    Leaving the block normally stops the triggers and stops accepting jobs, then waits up
    to *shutdown_timeout* seconds for the queued and running jobs to finish, then cancels
    those left (they end ``cancelled``) and returns normally. Leaving it with an exception
    cancels everything at once, and the exception propagates unchanged. Either way nothing
    runs once ``__aexit__`` has returned: a sync job that never calls
    :func:`concur.check_cancelled` delays it until its thread returns.

    Args:
        workers: how many jobs run at once (at least 1).
        queue_size: how many accepted jobs may wait for a worker (running jobs not
            counted; 0: a job is accepted only when a worker is free for it).
            :meth:`submit` waits while the queue is full.
        results_size: when above 0, the outcome of each job that finished (done or
            failed) is put in a buffer of this many, read with :meth:`results`; a job
            whose outcome finds it full keeps its worker until there is room.
        shutdown_timeout: seconds a normal exit waits for the jobs (``math.inf``: no
            bound).
        on_result: called as ``on_result(job, value)`` after each job that returned;
            sync (called on the event loop: keep it short) or async.
        on_error: called as ``on_error(job, exc)`` after each job that raised an
            ``Exception``; sync or async. What either handler raises is logged on the
            ``concur`` logger and otherwise ignored.

    Raises:
        ValueError: ``workers < 1``, a negative *queue_size*, *results_size* or
            *shutdown_timeout*.
        TypeError: an argument of the wrong type, or a handler that is not callable.
    """

    __slots__ = (
        "_entered",
        "_limiter",
        "_on_error",
        "_on_result",
        "_results_iter",
        "_results_size",
        "_shutdown_timeout",
        "_triggers",
        "_unretrieved",
    )

    def __init__(
        self,
        workers: int = 10,
        *,
        queue_size: int = 1000,
        results_size: int = 0,
        shutdown_timeout: float = 30.0,
        on_result: Callable[[Job[Any], Any], object] | None = None,
        on_error: Callable[[Job[Any], Exception], object] | None = None,
    ) -> None:
        workers = check_int(workers, "workers")
        queue_size = check_int(queue_size, "queue_size", minimum=0)
        self._results_size = check_int(results_size, "results_size", minimum=0)
        self._shutdown_timeout = check_number(shutdown_timeout, "shutdown_timeout", unit="seconds")
        for handler, arg in ((on_result, "on_result"), (on_error, "on_error")):
            if handler is not None:
                check_function(handler, "WorkerPool", arg=arg)
        self._on_result = on_result
        self._on_error = on_error
        super().__init__(workers, queue_size)
        self._triggers: set[Trigger] = set()
        self._results_iter: Results | None = None
        self._unretrieved: weakref.WeakSet[Job[Any]] = weakref.WeakSet()
        self._entered = False
        self._limiter: anyio.CapacityLimiter | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("this WorkerPool has already been entered; make a new one")
        self._entered = True
        self._changed = anyio.Event()
        self._limiter = anyio.CapacityLimiter(self._workers)
        tg = concur.TaskGroup()
        await tg.__aenter__()
        self._tg = tg
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tg = self._tg
        assert tg is not None
        self.close()
        outcome: BaseException | None = exc
        if exc is None:
            try:
                with anyio.move_on_after(self._shutdown_timeout):
                    while self._unsettled:
                        await self._wait_change()
            except BaseException as error:  # cancelled from outside: cancel everything
                outcome = error
        self._cancel_all()
        try:
            if isinstance(outcome, anyio.get_cancelled_exc_class()):
                # the task group must see its own (or an outer scope's) cancellation
                # (it never swallows it: only a task's failure could have cancelled the
                # group's own scope, and then it raises that failure instead)
                if outcome is exc:
                    await tg.__aexit__(exc_type, exc, tb)
                else:
                    await tg.__aexit__(type(outcome), outcome, outcome.__traceback__)
            else:
                # anyio would put the body's exception in a group: it propagates bare
                await tg.__aexit__(None, None, None)
            if outcome is not exc:
                assert outcome is not None
                raise outcome
        finally:
            for job in list(self._active):  # only if a task never ran a step (defensive)
                self._ended(job)
            self._exited = True
            self._notify()
            for job in list(self._unretrieved):
                job._log_unretrieved("in a WorkerPool")  # pyright: ignore[reportPrivateUsage]
            self._unretrieved.clear()

    def close(self) -> None:
        """Stop accepting jobs and stop the triggers; queued and running jobs go on.

        A :meth:`submit` waiting for room then raises :class:`anyio.ClosedResourceError`,
        as does any later submit. :meth:`results` ends once every job has finished and
        its outcome was read. Idempotent; leaving the block calls it.
        """
        if self._closed:
            return
        self._closed = True
        for trigger in list(self._triggers):
            trigger._stop("the pool closed")  # pyright: ignore[reportPrivateUsage]
        self._refuse_waiters()
        self._notify()

    def _cancel_all(self) -> None:
        self._cancel_queued()
        for trigger in list(self._triggers):
            trigger._stop("the pool exited")  # pyright: ignore[reportPrivateUsage]
        self._notify()

    # --- submitting ---------------------------------------------------------------------

    @overload
    async def submit(self, fn: Coroutine[Any, Any, T], /, *, name: str | None = None) -> Job[T]: ...

    @overload
    async def submit(
        self, fn: Callable[[*Ts], Awaitable[T]], /, *args: *Ts, name: str | None = None
    ) -> Job[T]: ...

    @overload
    async def submit(
        self, fn: Callable[[*Ts], T], /, *args: *Ts, name: str | None = None
    ) -> Job[T]: ...

    async def submit(
        self,
        fn: Callable[..., Awaitable[T]] | Callable[..., T] | Coroutine[Any, Any, T],
        /,
        *args: object,
        name: str | None = None,
    ) -> Job[T]:
        """Put a job in the queue, waiting while the queue is full, and return its
        :class:`Job`.

        *fn* is a sync function (run in a thread), an async function or a coroutine
        object (then no *args*; closed if it never starts). The job runs in a copy of the
        current context, under the current ambient settings.

        Cancellation: if the caller is cancelled while it waits for room, the job is
        withdrawn: it never runs (if it was admitted at that very moment it is cancelled,
        and ends ``cancelled``), and a coroutine object is closed.

        Raises:
            anyio.ClosedResourceError: the pool is closed or exited (also while waiting).
            RuntimeError: the pool was not entered with ``async with``.
            TypeError: *fn* is not callable, or is a coroutine object given *args*.
        """
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            if inspect.iscoroutine(fn):
                fn.close()  # it will never start
            raise
        job = self._make_job(fn, args, name, contextvars.copy_context(), concur.current_settings())
        return await self._submit(job)

    @overload
    def submit_nowait(
        self, fn: Coroutine[Any, Any, T], /, *, name: str | None = None
    ) -> Job[T]: ...

    @overload
    def submit_nowait(
        self, fn: Callable[[*Ts], Awaitable[T]], /, *args: *Ts, name: str | None = None
    ) -> Job[T]: ...

    @overload
    def submit_nowait(
        self, fn: Callable[[*Ts], T], /, *args: *Ts, name: str | None = None
    ) -> Job[T]: ...

    def submit_nowait(
        self,
        fn: Callable[..., Awaitable[T]] | Callable[..., T] | Coroutine[Any, Any, T],
        /,
        *args: object,
        name: str | None = None,
    ) -> Job[T]:
        """As :meth:`submit`, without waiting: if the queue is full, raise
        :class:`anyio.WouldBlock` (a coroutine object is then closed).

        Call it from the event loop's thread.

        Raises:
            anyio.WouldBlock: the queue is full (or other submitters already wait).
            anyio.ClosedResourceError: the pool is closed or exited.
            RuntimeError: the pool was not entered with ``async with``.
            TypeError: *fn* is not callable, or is a coroutine object given *args*.
        """
        job = self._make_job(fn, args, name, contextvars.copy_context(), concur.current_settings())
        if not self._accept(job):
            job._close_coro()  # pyright: ignore[reportPrivateUsage]
            raise anyio.WouldBlock
        return job

    def _make_job(
        self,
        fn: Any,
        args: tuple[Any, ...],
        name: str | None,
        context: contextvars.Context,
        settings: concur.Settings,
    ) -> Job[Any]:
        coro: Coroutine[Any, Any, Any] | None = None
        if inspect.iscoroutine(fn):
            coro = fn
            if args:
                coro.close()
                raise TypeError(
                    "submit() got a coroutine object and arguments: pass either a coroutine "
                    "object alone, or a function and its arguments"
                )
            fn = None
        else:
            check_function(fn, "submit", fix="pool.submit")
        if name is not None and not isinstance(name, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            if coro is not None:
                coro.close()
            raise TypeError(f"name must be a str or None, got {type(name).__name__} {name!r}")
        problem = self._refusal()
        if problem is not None:
            if coro is not None:
                coro.close()
            raise problem
        if name is None:
            name = str(getattr(coro, "__qualname__", None) or fn_name(coro if fn is None else fn))
        job: Job[Any] = Job(self, fn, args, coro, name, context, settings)
        return job

    def _refusal(self) -> Exception | None:
        if not self._entered:
            return RuntimeError("enter the WorkerPool with 'async with' before submitting jobs")
        if self._closed:
            return anyio.ClosedResourceError("the WorkerPool is closed: it accepts no more jobs")
        return None

    # --- running ------------------------------------------------------------------------

    async def _run(self, job: Job[Any]) -> None:
        try:
            with job._cancel_scope:  # pyright: ignore[reportPrivateUsage]
                try:
                    assert self._limiter is not None
                    value = await job._call(self._limiter)  # pyright: ignore[reportPrivateUsage]
                except anyio.get_cancelled_exc_class():
                    job._set_status(JobStatus.CANCELLED)  # pyright: ignore[reportPrivateUsage]
                    raise
                except Exception as exc:
                    job._fail(exc)  # pyright: ignore[reportPrivateUsage]
                except BaseException as exc:  # KeyboardInterrupt, SystemExit: they end the pool
                    job._fail(exc)  # pyright: ignore[reportPrivateUsage]
                    job._retrieved = True  # pyright: ignore[reportPrivateUsage]
                    raise
                else:
                    job._succeed(value)  # pyright: ignore[reportPrivateUsage]
                await self._handle(job)
            if job.status is JobStatus.RUNNING:  # cancelled before it ran a step
                job._set_status(JobStatus.CANCELLED)  # pyright: ignore[reportPrivateUsage]
            if self._results_size and job.status is not JobStatus.CANCELLED:
                await self._deliver(job)
        finally:
            if job.status is JobStatus.FAILED and not job._retrieved:  # pyright: ignore[reportPrivateUsage]
                self._unretrieved.add(job)
            self._ended(job)

    async def _handle(self, job: Job[Any]) -> None:
        """Call on_result or on_error for *job*; log what they raise."""
        if job.status is JobStatus.DONE:
            handler: Callable[[Job[Any], Any], object] | None = self._on_result
            arg: Any = job._value  # pyright: ignore[reportPrivateUsage]
        else:
            handler = self._on_error
            arg = job._exception  # pyright: ignore[reportPrivateUsage]
            if handler is not None:
                job._retrieved = True  # pyright: ignore[reportPrivateUsage]
        if handler is None:
            return
        try:
            result = handler(job, arg)
            if inspect.isawaitable(result):
                await result
        except Exception:
            which = "on_result" if job.status is JobStatus.DONE else "on_error"
            logger.exception("WorkerPool: %s raised for job %r; ignored", which, job.name)

    async def _deliver(self, job: Job[Any]) -> None:
        outcome: concur.Outcome[Any]
        if job.status is JobStatus.DONE:
            outcome = concur.Ok(job._value)  # pyright: ignore[reportPrivateUsage]
        else:
            exc = job._exception  # pyright: ignore[reportPrivateUsage]
            assert isinstance(exc, Exception)
            outcome = concur.Err(exc)
        try:
            while len(self._results) >= self._results_size and not self._forced:
                await self._wait_change()
        finally:
            # also when cancelled: nothing is dropped (the bound is then exceeded by at
            # most one outcome per worker)
            self._results.append((job, outcome))
            self._notify()

    # --- results, statistics, triggers --------------------------------------------------

    def results(self) -> AsyncIterator[concur.Outcome[Any]]:
        """The outcomes of the finished jobs, in the order they finished: ``concur.Ok(value)``
        for a job that returned, ``concur.Err(exc)`` for one that raised. A cancelled job
        has no outcome.

        Every call returns the same iterator: the pool has one stream. It ends once the
        pool is closed (or exited) and every outcome has been read, so it can be read to
        the end inside the block after :meth:`close`, or after the block.

        Cancellation: cancelling a reader that waits for an outcome loses nothing.

        Raises:
            RuntimeError: the pool was made with ``results_size=0``, or not yet entered.
        """
        if not self._results_size:
            raise RuntimeError(
                "this WorkerPool keeps no results: make it with results_size > 0 to read them"
            )
        if not self._entered:
            raise RuntimeError("enter the WorkerPool with 'async with' before reading results")
        if self._results_iter is None:
            self._results_iter = Results(self)
        return self._results_iter

    def statistics(self) -> WorkerPoolStatistics:
        """A snapshot of the pool's counts (``completed`` counts successes only)."""
        return WorkerPoolStatistics(
            workers=self._workers,
            running=self._running,
            queued=len(self._queue),
            completed=self._counts[JobStatus.DONE],
            failed=self._counts[JobStatus.FAILED],
            cancelled=self._counts[JobStatus.CANCELLED],
        )

    def every(
        self,
        interval: float,
        fn: Callable[..., object],
        /,
        *args: Any,
        name: str | None = None,
        max_consecutive_failures: int | None = None,
    ) -> Trigger:
        """Submit ``fn(*args)`` now, then every *interval* seconds, and return its
        :class:`Trigger`.

        Ticks are *interval* apart, measured between starts; a tick that comes while the
        trigger's previous run is queued or running is skipped, so it never overlaps
        itself. Each run is a job of the pool (it waits for room in the queue like
        :meth:`submit`), in a copy of this call's context.

        Args:
            interval: seconds between ticks (above 0).
            fn: a sync or async function.
            args: its arguments.
            name: names the trigger and its jobs (default: *fn*'s name).
            max_consecutive_failures: stop after this many failed runs in a row.

        Raises:
            ValueError: ``interval <= 0`` or ``max_consecutive_failures < 1``.
            anyio.ClosedResourceError: the pool is closed or exited.
        """
        interval = check_number(interval, "interval", strict=True, unit="seconds")
        return self._trigger("every", interval, None, fn, args, name, max_consecutive_failures)

    def when(
        self,
        predicate: Callable[[], object],
        fn: Callable[..., object],
        /,
        *args: Any,
        poll: float = 1.0,
        name: str | None = None,
        max_consecutive_failures: int | None = None,
    ) -> Trigger:
        """Every *poll* seconds, call *predicate* (sync, through :func:`concur.call`, or
        async) and, if it returns something true, submit ``fn(*args)``; return the
        :class:`Trigger`.

        Level-triggered: it fires at every poll at which *predicate* is true, except while
        its previous run is queued or running (then that poll is skipped: no overlap).
        A predicate that raises counts as a failure.

        Raises:
            ValueError: ``poll <= 0`` or ``max_consecutive_failures < 1``.
            anyio.ClosedResourceError: the pool is closed or exited.
        """
        check_function(predicate, "when", arg="predicate", fix="pool.when")
        poll = check_number(poll, "poll", strict=True, unit="seconds")
        return self._trigger("when", poll, predicate, fn, args, name, max_consecutive_failures)

    def _trigger(
        self,
        kind: str,
        period: float,
        predicate: Callable[[], object] | None,
        fn: Callable[..., object],
        args: tuple[Any, ...],
        name: str | None,
        max_consecutive_failures: int | None,
    ) -> Trigger:
        check_function(fn, kind, fix=f"pool.{kind}")
        if max_consecutive_failures is not None:
            check_int(max_consecutive_failures, "max_consecutive_failures")
        if name is not None and not isinstance(name, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"name must be a str or None, got {type(name).__name__} {name!r}")
        problem = self._refusal()
        if problem is not None:
            raise problem
        assert self._tg is not None and self._limiter is not None
        trigger = Trigger(
            self,
            kind,
            period,
            predicate,
            fn,
            args,
            fn_name(fn) if name is None else name,
            max_consecutive_failures,
            concur.current_settings(),
            self._limiter,
        )
        self._triggers.add(trigger)
        self._tg.create_task(
            trigger._loop(),  # pyright: ignore[reportPrivateUsage]
            name=f"trigger {trigger.name}",
            context=contextvars.copy_context(),
        )
        return trigger

    def _make_trigger_job(
        self, fn: Callable[..., object], args: tuple[Any, ...], name: str, settings: concur.Settings
    ) -> Job[Any]:
        return self._make_job(fn, args, name, contextvars.copy_context(), settings)
