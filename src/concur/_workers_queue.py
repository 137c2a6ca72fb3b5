"""The queue machinery of a :class:`~concur.WorkerPool`: its bounded queue, its workers,
the submitters waiting for room, and its results stream. Correct by construction: the
invariants are written above :class:`JobQueue`, and tests/concur/test_workers_stress.py checks
them under random operations."""

from __future__ import annotations

from collections import deque
from collections.abc import Coroutine
from typing import Any, Self, TypeVar, final

import anyio
import anyio.lowlevel

import concur

from ._workers_job import FINAL, Job, JobStatus

__all__ = ["JobQueue", "Results"]

T = TypeVar("T")


@final
class _Waiter:
    """A submit() waiting for room in the queue."""

    __slots__ = ("admitted", "job", "refused")

    def __init__(self, job: Job[Any]) -> None:
        self.job = job
        self.admitted = anyio.Event()
        self.refused = False  # set with admitted when the pool closed instead


class JobQueue:
    """The state and the machinery of a pool's queue; :class:`~concur.WorkerPool` adds
    the public face and runs the jobs (:meth:`_run`)."""

    # The queue machinery. Everything below is touched on the event loop's thread only,
    # and each change is followed by _fill(), which restores these invariants:
    #   I1  len(_queue) <= queue_size              (only accepted jobs that wait count)
    #   I2  _busy <= workers                       (_busy: job tasks alive)
    #   I3  _busy < workers  =>  _queue is empty   (no job waits while a worker is free)
    #   I4  _waiters  =>  _busy == workers and len(_queue) == queue_size
    #   I5  _closed  =>  _waiters is empty          (close() refuses them all)
    #   I6  _unsettled == len(_queue) + _busy
    # A job leaves _queue only to start (taking a worker) or to be cancelled, and a waiter
    # is admitted (moved into _queue, or started) by _fill() itself, in FIFO order, before
    # it is woken: so no wake-up is lost and nothing barges past a waiting submitter.

    __slots__ = (
        "_active",
        "_busy",
        "_changed",
        "_closed",
        "_counts",
        "_exited",
        "_forced",
        "_queue",
        "_queue_size",
        "_results",
        "_running",
        "_tg",
        "_unsettled",
        "_waiters",
        "_workers",
    )

    def __init__(self, workers: int, queue_size: int) -> None:
        self._workers = workers
        self._queue_size = queue_size
        self._queue: deque[Job[Any]] = deque()
        self._waiters: deque[_Waiter] = deque()
        self._busy = 0
        self._unsettled = 0
        self._running = 0  # jobs whose status is running
        self._counts: dict[JobStatus, int] = dict.fromkeys(FINAL, 0)
        self._active: set[Job[Any]] = set()  # jobs whose task is alive
        self._results: deque[tuple[Job[Any], concur.Outcome[Any]]] = deque()
        self._closed = False
        self._exited = False
        self._forced = False  # shutting down at once: outcomes go in whatever the bound
        self._tg: concur.TaskGroup | None = None
        self._changed: anyio.Event | None = None

    def _run(self, job: Job[Any]) -> Coroutine[Any, Any, None]:
        """The task that runs *job*; it must call :meth:`_ended` when it ends."""
        raise NotImplementedError

    # --- submitting -----------------------------------------------------------------------

    async def _submit(self, job: Job[T]) -> Job[T]:
        if self._accept(job):
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return job
        waiter = _Waiter(job)
        self._waiters.append(waiter)
        try:
            await waiter.admitted.wait()
        except BaseException:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                job._close_coro()  # pyright: ignore[reportPrivateUsage]
            elif not waiter.refused:
                job.cancel()  # admitted as we were cancelled: withdraw it
            raise
        if waiter.refused:
            job._close_coro()  # pyright: ignore[reportPrivateUsage]
            raise anyio.ClosedResourceError("the WorkerPool closed while submit() waited")
        return job

    def _accept(self, job: Job[Any]) -> bool:
        """Take *job* now if there is room without waiting."""
        if self._waiters:
            return False
        if self._busy < self._workers:
            self._unsettled += 1
            self._start(job)
            return True
        if len(self._queue) < self._queue_size:
            self._unsettled += 1
            self._queue.append(job)
            return True
        return False

    def _fill(self) -> None:
        """Restore the invariants after a worker was freed or a queued job withdrawn."""
        queue = self._queue
        while self._busy < self._workers and queue:
            self._start(queue.popleft())
        while self._waiters and (self._busy < self._workers or len(queue) < self._queue_size):
            waiter = self._waiters.popleft()
            self._unsettled += 1
            if self._busy < self._workers:
                self._start(waiter.job)
            else:
                queue.append(waiter.job)
            waiter.admitted.set()

    def _withdraw(self, job: Job[Any]) -> None:
        """Cancel a queued job: out of the queue, and its place to the next submitter."""
        self._queue.remove(job)
        self._unsettled -= 1
        job._set_status(JobStatus.CANCELLED)  # pyright: ignore[reportPrivateUsage]
        self._fill()
        self._notify()

    def _refuse_waiters(self) -> None:
        """close(): every waiting submitter is refused (I5)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            waiter.refused = True
            waiter.admitted.set()

    def _cancel_queued(self) -> None:
        """Cancel every queued job, and the tasks of the running ones."""
        self._forced = True
        while self._queue:
            self._queue.popleft()._set_status(JobStatus.CANCELLED)  # pyright: ignore[reportPrivateUsage]
            self._unsettled -= 1
        for job in self._active:
            job._cancel_scope.cancel()  # pyright: ignore[reportPrivateUsage]

    # --- running --------------------------------------------------------------------------

    def _start(self, job: Job[Any]) -> None:
        assert self._tg is not None
        self._busy += 1
        self._active.add(job)
        job._set_status(JobStatus.RUNNING)  # pyright: ignore[reportPrivateUsage]
        try:
            self._tg.create_task(self._run(job), name=job.name, context=job._context)  # pyright: ignore[reportPrivateUsage]
        except BaseException:
            self._ended(job)
            raise

    def _ended(self, job: Job[Any]) -> None:
        job._set_status(JobStatus.CANCELLED)  # pyright: ignore[reportPrivateUsage]  # if not final
        self._active.discard(job)
        self._busy -= 1
        self._unsettled -= 1
        if not self._forced:
            self._fill()
        self._notify()

    # --- waking -------------------------------------------------------------------------

    def _notify(self) -> None:
        # wake every waiter; each checks its own condition again
        changed = self._changed
        if changed is not None and not changed.is_set():
            if not self._exited:
                self._changed = anyio.Event()
            changed.set()

    async def _wait_change(self) -> None:
        assert self._changed is not None
        await self._changed.wait()

    def _status_changed(self, old: JobStatus, new: JobStatus) -> None:
        if old is JobStatus.RUNNING:
            self._running -= 1
        if new is JobStatus.RUNNING:
            self._running += 1
        elif new in FINAL:
            self._counts[new] += 1


@final
class Results:
    """The pool's one stream of outcomes."""

    __slots__ = ("_pool",)

    def __init__(self, pool: JobQueue) -> None:
        self._pool = pool

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> concur.Outcome[Any]:
        pool = self._pool
        await anyio.lowlevel.checkpoint()
        results = pool._results  # pyright: ignore[reportPrivateUsage]
        while not results:
            if pool._exited or (pool._closed and not pool._unsettled):  # pyright: ignore[reportPrivateUsage]
                raise StopAsyncIteration
            await pool._wait_change()  # pyright: ignore[reportPrivateUsage]
        job, outcome = results.popleft()
        job._retrieved = True  # pyright: ignore[reportPrivateUsage]
        pool._notify()  # pyright: ignore[reportPrivateUsage]
        return outcome
