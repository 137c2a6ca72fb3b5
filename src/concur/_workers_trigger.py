"""The triggers of a :class:`~concur.WorkerPool`: :meth:`~WorkerPool.every` and
:meth:`~WorkerPool.when`."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, final

import anyio
import anyio.lowlevel

import concur

from ._workers_job import Job, JobStatus, in_settings, logger

if TYPE_CHECKING:
    from ._workers import WorkerPool

__all__ = ["Trigger"]


@final
class Trigger:
    """A periodic (:meth:`WorkerPool.every`) or conditional (:meth:`WorkerPool.when`)
    source of jobs, made by the pool.

    It stops when :meth:`cancel` is called, when the pool closes or exits, or after
    ``max_consecutive_failures`` failures in a row (a run that raised, or for ``when`` a
    predicate that raised; a run that returns resets the count). It logs why it stopped
    on the ``concur`` logger: at ERROR after failures, at DEBUG otherwise. Stopping a
    trigger does not cancel its run in progress. Each failed run is logged at ERROR
    unless the pool has an ``on_error`` handler.
    """

    __slots__ = (
        "__weakref__",
        "_args",
        "_failures",
        "_fn",
        "_inflight",
        "_kind",
        "_limit",
        "_limiter",
        "_name",
        "_period",
        "_pool",
        "_predicate",
        "_reason",
        "_scope",
        "_settings",
        "_stopped",
    )

    def __init__(
        self,
        pool: WorkerPool,
        kind: str,
        period: float,
        predicate: Callable[[], object] | None,
        fn: Callable[..., object],
        args: tuple[Any, ...],
        name: str,
        limit: int | None,
        settings: concur.Settings,
        limiter: anyio.CapacityLimiter,
    ) -> None:
        self._pool = pool
        self._kind = kind
        self._period = period
        self._predicate = predicate
        self._fn = fn
        self._args = args
        self._name = name
        self._limit = limit
        self._settings = settings
        self._limiter = limiter
        self._scope = anyio.CancelScope()
        self._stopped = anyio.Event()
        self._reason: str | None = None
        self._inflight: Job[Any] | None = None
        self._failures = 0

    @property
    def name(self) -> str:
        """The trigger's name (also the name of its jobs)."""
        return self._name

    @property
    def stopped(self) -> bool:
        """Whether the trigger has stopped (it submits no more runs)."""
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        """Why the trigger stopped (``None`` while it runs)."""
        return self._reason

    @property
    def failures(self) -> int:
        """Its failures in a row so far."""
        return self._failures

    def cancel(self) -> None:
        """Stop the trigger: it submits no more runs. A run already queued or running
        goes on. Idempotent; never blocks."""
        self._stop("cancelled")

    async def wait(self) -> None:
        """Wait until the trigger has stopped.

        Cancellation: cancelling the waiter does not stop the trigger.
        """
        await self._stopped.wait()

    def __repr__(self) -> str:
        state = f"stopped: {self._reason}" if self._reason is not None else "running"
        return f"<Trigger {self._kind} {self._name!r} {state}>"

    # --- the pool's side ----------------------------------------------------------------

    def _stop(self, reason: str, level: int = logging.DEBUG) -> None:
        if self._reason is not None:
            return
        self._reason = reason
        self._scope.cancel()
        self._pool._triggers.discard(self)  # pyright: ignore[reportPrivateUsage]
        logger.log(level, "trigger %r stopped: %s", self._name, reason)

    async def _loop(self) -> None:
        try:
            with self._scope:
                if self._predicate is None:
                    await self._every(self._period)
                else:
                    await self._when(self._predicate, self._period)
        finally:
            self._stop("the pool exited")  # a no-op unless it stopped for no known reason
            self._stopped.set()

    async def _every(self, interval: float) -> None:
        start = anyio.current_time()
        tick = 0
        while True:
            if self._inflight is None:
                await self._fire()
            # the next tick on the grid start + k * interval; those already past are skipped
            elapsed = anyio.current_time() - start
            tick = max(tick + 1, math.floor(elapsed / interval) + 1)
            await anyio.sleep_until(start + tick * interval)

    async def _when(self, predicate: Callable[[], object], poll: float) -> None:
        while True:
            if self._inflight is None and self._reason is None:
                try:
                    fire = await in_settings(self._settings, self._limiter, predicate)
                except Exception as exc:
                    self._failed(exc, "the predicate", logged=False)
                else:
                    if fire:
                        await self._fire()
            await anyio.sleep(poll)

    async def _fire(self) -> None:
        pool = self._pool
        # stopped while this task was about to resume (its cancellation not yet delivered)
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._reason is not None:
            return
        try:
            job = pool._make_trigger_job(self._fn, self._args, self._name, self._settings)  # pyright: ignore[reportPrivateUsage]
        except anyio.ClosedResourceError:
            self._stop("the pool closed")
            return
        job._on_settle = self._settled  # pyright: ignore[reportPrivateUsage]
        self._inflight = job
        try:
            await pool._submit(job)  # pyright: ignore[reportPrivateUsage]
        except anyio.ClosedResourceError:
            self._inflight = None
            self._stop("the pool closed")
        except BaseException:
            if self._inflight is job and job.status is JobStatus.QUEUED:
                self._inflight = None  # withdrawn before it was accepted
            raise

    def _settled(self, job: Job[Any]) -> None:
        # called synchronously when the job's status becomes final
        if self._inflight is job:
            self._inflight = None
        if job.status is JobStatus.DONE:
            self._failures = 0
        elif job.status is JobStatus.FAILED:
            exc = job._exception  # pyright: ignore[reportPrivateUsage]
            handled = self._pool._on_error is not None  # pyright: ignore[reportPrivateUsage]
            if isinstance(exc, Exception):
                job._retrieved = True  # pyright: ignore[reportPrivateUsage]  # the trigger saw it
                self._failed(exc, "a run", logged=handled)

    def _failed(self, exc: Exception, what: str, *, logged: bool) -> None:
        self._failures += 1
        count = self._failures
        if not logged:
            logger.error(
                "trigger %r: %s failed (%d in a row): %r",
                self._name,
                what,
                count,
                exc,
                exc_info=exc,
            )
        if self._limit is not None and count >= self._limit:
            self._stop(
                f"{count} failures in a row (max_consecutive_failures={self._limit}); "
                f"the last: {what} raised {exc!r}",
                logging.ERROR,
            )
