"""The jobs of a :class:`~concur.WorkerPool`: :class:`Job`, :class:`JobStatus`, and the
pool's :class:`WorkerPoolStatistics`."""

from __future__ import annotations

import contextlib
import contextvars
import enum
import logging
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, final

import anyio
import attrs

import concur

if TYPE_CHECKING:
    from ._workers import WorkerPool

__all__ = ["Job", "JobStatus", "WorkerPoolStatistics", "logger"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

logger: Final = logging.getLogger("concur")
_EMPTY_CONTEXT: Final = contextvars.Context()


@final
class JobStatus(enum.StrEnum):
    """Where a :class:`Job` is in its life: ``queued``, then ``running``, then one of
    ``done``, ``failed`` or ``cancelled`` (a queued job can also go straight to
    ``cancelled``). Its values are the lower-case strings."""

    QUEUED = "queued"
    """Accepted by the pool, waiting for a free worker."""
    RUNNING = "running"
    """Given a worker: running (or about to run, at its first instruction)."""
    DONE = "done"
    """Returned a value."""
    FAILED = "failed"
    """Raised an exception."""
    CANCELLED = "cancelled"
    """Cancelled before it started or while it ran."""


#: the statuses a job ends in
FINAL: Final = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED})


@final
@attrs.frozen
class WorkerPoolStatistics:
    """A snapshot of a :class:`~concur.WorkerPool`, from :meth:`WorkerPool.statistics`."""

    workers: int
    """The pool's number of workers (jobs that may run at once)."""
    running: int
    """Jobs running now."""
    queued: int
    """Jobs accepted and waiting for a worker (at most ``queue_size``)."""
    completed: int
    """Jobs that returned a value (successes only)."""
    failed: int
    """Jobs that raised an exception."""
    cancelled: int
    """Jobs cancelled, queued or running."""


@final
class Job(Generic[T_co]):
    """One job submitted to a :class:`~concur.WorkerPool`, returned by
    :meth:`WorkerPool.submit`.

    Await it for its result: ``value = await job`` returns what the job's function
    returned, raises the exception it raised (bare, as it was raised), or raises
    :class:`anyio.TaskCancelled` if the job was cancelled. Awaiting it does not run or
    start anything: the pool does. Cancelling a task that awaits a job does not cancel
    the job (call :meth:`cancel` for that). A job is made by the pool only; use it from the
    event loop's thread.
    """

    __slots__ = (
        "__weakref__",
        "_args",
        "_cancel_scope",
        "_context",
        "_coro",
        "_exception",
        "_finished",
        "_fn",
        "_name",
        "_on_settle",
        "_pool",
        "_retrieved",
        "_settings",
        "_status",
        "_value",
    )

    def __init__(
        self,
        pool: WorkerPool,
        fn: Callable[..., Any] | None,
        args: tuple[Any, ...],
        coro: Coroutine[Any, Any, Any] | None,
        name: str,
        context: contextvars.Context,
        settings: concur.Settings,
    ) -> None:
        self._pool = pool
        self._fn = fn
        self._args = args
        self._coro = coro
        self._name = name
        self._context = context  # a copy of the submitter's context, for this job only
        self._settings = settings  # the submitter's ambient settings
        self._status = JobStatus.QUEUED
        self._finished = anyio.Event()
        self._cancel_scope = anyio.CancelScope()
        self._value: Any = None
        self._exception: BaseException | None = None
        # the failure was seen: awaited, given to on_error, taken from results(), logged
        self._retrieved = False
        #: called (synchronously) once the job has a final status; used by triggers
        self._on_settle: Callable[[Job[Any]], None] | None = None

    @property
    def name(self) -> str:
        """The *name* given to :meth:`~concur.WorkerPool.submit`, else the qualified name
        of the job's function."""
        return self._name

    @property
    def status(self) -> JobStatus:
        """The job's :class:`JobStatus` now."""
        return self._status

    def cancel(self) -> None:
        """Cancel the job.

        A queued job is taken out of the queue (its place goes to the next submitter) and
        never runs; a running job is cancelled at its next checkpoint (a sync job in a
        thread at its next :func:`concur.check_cancelled`, else when its thread returns).
        Either way it ends ``cancelled`` (unless a running job ignores the cancellation
        and returns or raises). A finished job is left as it is. Idempotent; never blocks.
        """
        if self._status is JobStatus.QUEUED:
            self._pool._withdraw(self)  # pyright: ignore[reportPrivateUsage]
        elif self._status is JobStatus.RUNNING:
            self._cancel_scope.cancel()

    async def wait(self) -> None:
        """Wait until the job has finished, whatever its outcome; never raises the job's
        exception.

        Cancellation: cancelling the waiter does not cancel the job.
        """
        await self._finished.wait()

    def __await__(self) -> Generator[Any, Any, T_co]:
        return self._result().__await__()

    async def _result(self) -> T_co:
        await self._finished.wait()
        status = self._status
        if status is JobStatus.DONE:
            return self._value  # type: ignore[no-any-return]
        if status is JobStatus.FAILED:
            self._retrieved = True
            assert self._exception is not None
            raise self._exception
        raise anyio.TaskCancelled(f"the job {self._name!r} was cancelled")

    def __repr__(self) -> str:
        return f"<Job {self._name!r} {self._status.value}>"

    # --- the pool's side ----------------------------------------------------------------

    def _set_status(self, status: JobStatus) -> None:
        """The one place a job's status changes (an observability layer hooks here)."""
        old = self._status
        if old in FINAL:
            return
        self._status = status
        self._pool._status_changed(old, status)  # pyright: ignore[reportPrivateUsage]
        if status in FINAL:
            self._fn = None
            self._args = ()
            self._context = _EMPTY_CONTEXT  # keep no context variables alive
            self._close_coro()
            self._finished.set()
            on_settle = self._on_settle
            if on_settle is not None:
                self._on_settle = None
                on_settle(self)

    def _succeed(self, value: Any) -> None:
        self._value = value
        self._set_status(JobStatus.DONE)

    def _fail(self, exc: BaseException) -> None:
        self._exception = exc
        self._set_status(JobStatus.FAILED)

    def _close_coro(self) -> None:
        # a coroutine object that never started is closed, so it never warns "never
        # awaited"; closing a finished one does nothing
        coro, self._coro = self._coro, None
        if coro is not None:
            coro.close()

    def _call(self, limiter: anyio.CapacityLimiter) -> Awaitable[Any]:
        """The job's call: through :func:`concur.call` (a sync function in a thread under
        the submitter's ambient limiter, else *limiter*), in the submitter's handoff policy
        and per-call timeout."""
        coro = self._coro
        if coro is not None:
            self._coro = None
            return _in_settings(self._settings, limiter, _awaited, coro)
        assert self._fn is not None
        return _in_settings(self._settings, limiter, self._fn, *self._args)

    def _log_unretrieved(self, when: str) -> None:
        if self._status is JobStatus.FAILED and not self._retrieved:
            self._retrieved = True
            exc = self._exception
            logger.error(
                "job %r failed %s, and nobody awaited it and no on_error handled it: %r",
                self._name,
                when,
                exc,
                exc_info=exc,
            )

    def __del__(self) -> None:
        if not self._retrieved and self._status is JobStatus.FAILED:
            with contextlib.suppress(Exception):  # at interpreter exit logging may be gone
                self._log_unretrieved("(noticed when it was garbage-collected)")


async def in_settings(
    settings: concur.Settings,
    own_limiter: anyio.CapacityLimiter,
    fn: Callable[..., Any],
    *args: Any,
) -> Any:
    """``concur.call(fn, *args)`` under *settings* (the ambient settings where the job or
    trigger was made): their limiter if a scope or group set one, else *own_limiter* (the
    pool's), their handoff policy and their per-call timeout."""
    timeout = settings.timeout
    limiter = own_limiter if settings.limiter is None else settings.current_limiter()
    with concur.scope(
        limiter=limiter,
        handoff=settings.handoff,
        # math.inf: no bound, even where the pool's own scope set one
        timeout=float("inf") if timeout is None else timeout,
    ):
        return await concur.call(fn, *args)


_in_settings = in_settings


async def _awaited(coro: Coroutine[Any, Any, T]) -> T:
    return await coro
