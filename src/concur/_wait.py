"""Wait strategies: gather, gather_settled, race and first_success.

They run their jobs in an anyio task group (``gather`` and ``gather_settled`` on the
bounded pool of :mod:`concur._map`), so nothing outlives the call, and they follow its
error rule: one real failure is raised bare, two or more as an ``ExceptionGroup``
(``first_success`` fails only when every job failed, and then always with a group).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Generic, Literal, NoReturn, TypeAlias, TypeVar, cast, final, overload

import anyio
import attrs

from ._core import CallGroup, call, check_int, check_timeout, first_interrupt, settings_var
from ._core.settings import bounded, same
from ._map import ListMap, Source

__all__ = ["Err", "Ok", "Outcome", "first_success", "gather", "gather_settled", "race"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

#: A job: a coroutine object, or a zero-argument callable, async or sync.
Job: TypeAlias = "Coroutine[Any, Any, T] | Callable[[], Awaitable[T]] | Callable[[], T]"


# --- outcomes ---------------------------------------------------------------------------------


@final
@attrs.frozen
class Ok(Generic[T_co]):
    """The outcome of a job that returned *value*."""

    value: T_co
    """What the job returned."""

    @property
    def is_ok(self) -> Literal[True]:
        """Always ``True``."""
        return True

    def unwrap(self) -> T_co:
        """Return ``value``."""
        return self.value


@final
@attrs.frozen
class Err:
    """The outcome of a job that raised *error*."""

    error: Exception
    """The exception the job raised (its ``__traceback__`` is kept)."""

    @property
    def is_ok(self) -> Literal[False]:
        """Always ``False``."""
        return False

    def unwrap(self) -> NoReturn:
        """Raise ``error``."""
        raise self.error


#: The outcome of one job in :func:`gather_settled`: ``Ok(value)`` or ``Err(error)``.
Outcome: TypeAlias = Ok[T] | Err


# --- validation -----------------------------------------------------------------------------


def _close_jobs(jobs: Iterable[object]) -> None:
    for job in jobs:
        if inspect.iscoroutine(job):
            job.close()


def _check_jobs(jobs: tuple[object, ...], where: str) -> None:
    for i, job in enumerate(jobs):
        if not (inspect.iscoroutine(job) or callable(job)):
            _close_jobs(jobs)
            shown = f"{type(job).__name__} {job!r}"
            hint = ""
            if isinstance(job, (list, tuple, set)):
                _close_jobs(cast("Iterable[object]", job))  # no "never awaited" warnings
                hint = f"; to pass a list of jobs, unpack it: {where}(*jobs)"
            raise TypeError(
                f"{where}() takes coroutine objects or zero-argument callables as jobs; "
                f"job {i} is {shown}{hint}"
            )


# --- running jobs ---------------------------------------------------------------------------


async def _invoke(job: Job[T]) -> T:
    """Run one job: await a coroutine object, or make a component call of a callable."""
    if inspect.iscoroutine(job):
        return cast(T, await bounded(settings_var.get().timeout, same, job))
    return await call(cast("Callable[[], T]", job))


async def _failures_of(call: Awaitable[T]) -> T:
    """Await *call*; a group of its failures and cancellations becomes its failures.

    A job that fails while ``race``/``first_success`` cancels it (a loser) may raise, on
    trio, ``BaseExceptionGroup[failure..., Cancelled]``: its failures are the job's
    outcome, and the cancellation is the helper's own, which it is ending anyway. An
    interrupt (``KeyboardInterrupt``, ``SystemExit``) propagates.
    """
    try:
        return await call
    except BaseExceptionGroup as group:
        failures, _ = group.split(Exception)
        if failures is None or first_interrupt(group) is not None:
            raise
        raise failures from None


async def _settle(job: Job[T]) -> Outcome[T]:
    try:
        return Ok(await _invoke(job))
    except Exception as exc:
        return Err(exc)
    except BaseExceptionGroup as group:
        # It holds a cancellation or an interrupt, which come from outside the job: the
        # caller is being cancelled (its outcomes are dropped) or interrupted.
        interrupt = first_interrupt(group)
        if interrupt is not None:
            raise interrupt from None
        _, rest = group.split(Exception)
        if rest is None:  # pragma: no cover - a group of Exceptions is an Exception
            raise
        raise rest from None


# --- gather, gather_settled, race, first_success ---------------------------------------------


async def _run_jobs(
    run: Callable[[Job[Any]], Awaitable[Any]], jobs: tuple[Job[Any], ...], limit: int | None
) -> list[Any]:
    if limit is None:
        limit = max(len(jobs), 1)
    it = iter(jobs)
    try:
        return await ListMap(run, Source(it, None), limit, True).run()
    finally:
        _close_jobs(it)  # the jobs that never started


@overload
async def gather(
    *jobs: Coroutine[Any, Any, T] | Callable[[], Awaitable[T]], limit: int | None = None
) -> list[T]: ...


@overload
async def gather(*jobs: Callable[[], T], limit: int | None = None) -> list[T]: ...


async def gather(
    *jobs: Coroutine[Any, Any, Any] | Callable[[], Any], limit: int | None = None
) -> list[Any]:
    """Run *jobs* concurrently and return their results in job order.

    A job is a coroutine object, or a zero-argument callable, async or sync (sync jobs run
    in worker threads through :func:`concur.call`, under the ambient limiter and handoff
    policy). At most *limit* jobs run at once (all of them if ``None``); the next one
    starts when one finishes. Fail-fast: the first failure cancels the other jobs. A
    coroutine object that never started is closed (no "never awaited" warning).

    Args:
        jobs: the jobs.
        limit: the most jobs running at once, or ``None`` for no limit.

    Returns:
        The results, in the order of *jobs*; ``[]`` for no jobs.

    Raises:
        Exception: the exception of the one job that failed, bare, when the others were
            only cancelled by fail-fast.
        ExceptionGroup: when two or more jobs failed on their own. ``except*`` handles
            both forms alike.
        TypeError: a job is neither a coroutine object nor callable.
        ValueError: ``limit < 1``.

    Cancellation: cancelling the caller cancels every running job and waits until they
    have finished (a sync job's thread is waited for, see :func:`concur.to_thread`); jobs
    not yet started never start.
    """
    _check_jobs(jobs, "gather")
    if limit is not None:
        try:
            check_int(limit, "limit")
        except (TypeError, ValueError):
            _close_jobs(jobs)
            raise
    return await _run_jobs(_invoke, jobs, limit)


@overload
async def gather_settled(
    *jobs: Coroutine[Any, Any, T] | Callable[[], Awaitable[T]], limit: int | None = None
) -> list[Outcome[T]]: ...


@overload
async def gather_settled(*jobs: Callable[[], T], limit: int | None = None) -> list[Outcome[T]]: ...


async def gather_settled(
    *jobs: Coroutine[Any, Any, Any] | Callable[[], Any], limit: int | None = None
) -> list[Outcome[Any]]:
    """Run *jobs* concurrently and return the outcome of each, in job order.

    Like :func:`gather`, but a job's failure does not cancel the others and is not
    raised: each job's outcome is :class:`Ok` (its value) or :class:`Err` (the
    :class:`Exception` it raised). ``BaseException`` s that are not ``Exception`` s
    (``KeyboardInterrupt``, the cancellation exception) are not captured: they propagate.

    Args:
        jobs: the jobs (coroutine objects or zero-argument callables, async or sync).
        limit: the most jobs running at once, or ``None`` for no limit.

    Returns:
        One :class:`Ok` or :class:`Err` per job, in the order of *jobs*.

    Raises:
        TypeError: a job is neither a coroutine object nor callable.
        ValueError: ``limit < 1``.

    Cancellation: cancelling the caller cancels every running job, waits until they have
    finished and propagates; no outcomes are returned.
    """
    _check_jobs(jobs, "gather_settled")
    if limit is not None:
        try:
            check_int(limit, "limit")
        except (TypeError, ValueError):
            _close_jobs(jobs)
            raise
    return await _run_jobs(_settle, jobs, limit)


def _check_race(jobs: tuple[object, ...], timeout: object, where: str) -> None:
    _check_jobs(jobs, where)
    if not jobs:
        raise ValueError(f"{where}() needs at least one job")
    try:
        check_timeout(timeout)
    except (TypeError, ValueError):
        _close_jobs(jobs)
        raise


@overload
async def race(
    *jobs: Coroutine[Any, Any, T] | Callable[[], Awaitable[T]], timeout: float | None = None
) -> T: ...


@overload
async def race(*jobs: Callable[[], T], timeout: float | None = None) -> T: ...


async def race(
    *jobs: Coroutine[Any, Any, Any] | Callable[[], Any], timeout: float | None = None
) -> Any:
    """Run *jobs* concurrently and return the outcome of the first one to finish.

    The first job to finish decides: its value is returned, or its exception is raised
    (bare). The other jobs are cancelled and have finished before ``race`` returns; their
    results and failures after that (a sync job that could not stop, say) are discarded.

    Args:
        jobs: the jobs (coroutine objects or zero-argument callables, async or sync).
        timeout: seconds to wait for a first finisher.

    Returns:
        The value of the first job to finish.

    Raises:
        Exception: the exception of the first job to finish, if it failed.
        TimeoutError: *timeout* elapsed before any job finished.
        ValueError: no jobs, or a negative timeout.
        TypeError: a job is neither a coroutine object nor callable.

    Cancellation: cancelling the caller cancels every job, waits until they have
    finished, and propagates.
    """
    _check_race(jobs, timeout, "race")
    outcome: list[Outcome[Any]] = []
    it = iter(jobs)

    async def runner(tg: CallGroup) -> None:
        job = next(it)
        try:
            value = await _failures_of(_invoke(job))
        except Exception as exc:
            if not outcome:
                outcome.append(Err(exc))
                tg.cancel_scope.cancel()
            return
        if not outcome:
            outcome.append(Ok(value))
            tg.cancel_scope.cancel()

    try:
        with anyio.move_on_after(timeout) as scope:
            async with CallGroup() as tg:
                for _ in jobs:
                    tg.start_soon(runner, tg)
    finally:
        _close_jobs(it)
    if not outcome:
        assert scope.cancelled_caught
        raise TimeoutError(f"no job finished within {timeout} seconds")
    return outcome[0].unwrap()


@overload
async def first_success(
    *jobs: Coroutine[Any, Any, T] | Callable[[], Awaitable[T]], timeout: float | None = None
) -> T: ...


@overload
async def first_success(*jobs: Callable[[], T], timeout: float | None = None) -> T: ...


async def first_success(
    *jobs: Coroutine[Any, Any, Any] | Callable[[], Any], timeout: float | None = None
) -> Any:
    """Run *jobs* concurrently and return the first successful value.

    Failures are set aside while other jobs run. When a job succeeds, the others are
    cancelled and have finished before ``first_success`` returns.

    Args:
        jobs: the jobs (coroutine objects or zero-argument callables, async or sync).
        timeout: seconds to wait for a success.

    Returns:
        The value of the first job to succeed.

    Raises:
        ExceptionGroup: every job failed; it holds their exceptions in job order (a group
            even for a single job).
        TimeoutError: *timeout* elapsed with no success (failures so far are discarded).
        ValueError: no jobs, or a negative timeout.
        TypeError: a job is neither a coroutine object nor callable.

    Cancellation: cancelling the caller cancels every job, waits until they have
    finished, and propagates.
    """
    _check_race(jobs, timeout, "first_success")
    errors: list[Exception | None] = [None] * len(jobs)
    winner: list[Any] = []
    it = iter(enumerate(jobs))

    async def runner(tg: CallGroup) -> None:
        i, job = next(it)
        try:
            value = await _failures_of(_invoke(job))
        except Exception as exc:
            errors[i] = exc
            return
        if not winner:
            winner.append(value)
            tg.cancel_scope.cancel()

    try:
        with anyio.move_on_after(timeout) as scope:
            async with CallGroup() as tg:
                for _ in jobs:
                    tg.start_soon(runner, tg)
    finally:
        _close_jobs(job for _, job in it)
    if winner:
        return winner[0]
    if scope.cancelled_caught:
        raise TimeoutError(f"no job succeeded within {timeout} seconds")
    raise ExceptionGroup(f"all {len(jobs)} jobs failed", [exc for exc in errors if exc is not None])
