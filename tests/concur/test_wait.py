"""gather, gather_settled, race and first_success, on asyncio and trio."""

from __future__ import annotations

import functools
import gc
import inspect
import subprocess
import sys
import threading
import traceback
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from wait_helpers import (
    InFlight,
    Marker,
    cancel_then_fail,
    fail,
    fail_when_cancelled,
    outcome_of,
    value,
)

import concur

# --- Ok / Err ----------------------------------------------------------------------------------


def test_ok_and_err_are_frozen_values() -> None:
    """``Ok`` and ``Err`` expose is_ok, value/error and unwrap, and cannot be changed."""
    ok = concur.Ok(3)
    assert ok.is_ok is True
    assert ok.value == 3
    assert ok.unwrap() == 3
    assert ok == concur.Ok(3)
    error = ValueError("x")
    err = concur.Err(error)
    assert err.is_ok is False
    assert err.error is error
    with pytest.raises(ValueError, match="x"):
        err.unwrap()
    with pytest.raises(AttributeError):
        ok.value = 4  # type: ignore[misc]


# --- gather ---------------------------------------------------------------------------------


async def test_gather_returns_results_in_job_order() -> None:
    """Coroutines, async callables and sync callables give their results in job order."""
    main = threading.get_ident()
    results = await concur.gather(value(1), lambda: threading.get_ident(), value(3))
    assert results[0] == 1
    assert results[1] != main  # the sync job ran in a worker thread
    assert results[2] == 3


async def test_gather_async_callable_is_awaited() -> None:
    """An async zero-argument callable is called and awaited."""

    async def job() -> int:
        return 7

    assert await concur.gather(job, job) == [7, 7]


async def test_gather_of_nothing_is_empty() -> None:
    """``gather()`` with no jobs returns ``[]``."""
    assert await concur.gather() == []
    assert await concur.gather_settled() == []


async def test_gather_honours_limit() -> None:
    """Never more than *limit* jobs run at once, and the limit is reached."""
    counter = InFlight()
    results = await concur.gather(*(counter.run(i) for i in range(20)), limit=3)
    assert results == list(range(20))
    assert counter.peak == 3


async def test_gather_one_failure_is_raised_bare_with_its_traceback() -> None:
    """One failure cancels the others and is raised bare, its traceback intact."""
    counter = InFlight()
    gate = anyio.Event()
    with pytest.raises(ValueError, match="boom") as info:
        await concur.gather(counter.run(1, gate), fail(ValueError("boom")), counter.run(2, gate))
    assert counter.cancelled == 2
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "fail" in frames


async def test_gather_two_own_failures_make_a_group() -> None:
    """Two jobs that fail on their own give an ``ExceptionGroup`` of both."""

    async def fails_on_cancel() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            raise RuntimeError("cleanup failed")

    with pytest.RaisesGroup(ValueError, RuntimeError):
        await concur.gather(fails_on_cancel(), fail(ValueError("boom")))


async def test_except_star_handles_the_bare_form() -> None:
    """``except*`` catches the bare exception too."""
    caught = []
    try:
        await concur.gather(fail(KeyError("k")))
    except* KeyError as group:
        caught.append(group)
    assert len(caught) == 1


async def test_gather_closes_jobs_that_never_start() -> None:
    """Coroutine jobs left unstarted by fail-fast are closed, without a warning."""
    jobs = [value(i) for i in range(5)]
    with pytest.raises(ValueError, match="first"):
        await concur.gather(fail(ValueError("first")), *jobs, limit=1)
    gc.collect()
    assert all(inspect.getcoroutinestate(job) == inspect.CORO_CLOSED for job in jobs)


async def test_gather_bad_input_is_refused_and_closes_coroutines() -> None:
    """A non-job or a bad limit raises ``TypeError``/``ValueError``; coroutines are closed."""
    job = value(1)
    with pytest.raises(TypeError, match="job 1"):
        await concur.gather(job, 42)  # type: ignore[arg-type]
    assert inspect.getcoroutinestate(job) == inspect.CORO_CLOSED
    job = value(1)
    with pytest.raises(ValueError, match="limit"):
        await concur.gather(job, limit=0)
    assert inspect.getcoroutinestate(job) == inspect.CORO_CLOSED
    with pytest.raises(TypeError, match="limit"):
        await concur.gather(limit=1.5)  # type: ignore[arg-type]


async def test_gather_cancelled_from_outside_cancels_jobs() -> None:
    """Cancelling the caller cancels the running jobs, which finish before it returns."""
    counter = InFlight()
    gate = anyio.Event()
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def caller() -> None:
                await concur.gather(*(counter.run(i, gate) for i in range(4)))

            tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            assert counter.now == 4
            scope.cancel()
    assert scope.cancelled_caught
    assert counter.cancelled == 4
    assert counter.now == 0


async def test_gather_sync_jobs_use_the_ambient_limiter() -> None:
    """Sync jobs run in threads under the ambient thread limit."""
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def job() -> None:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        threading.Event().wait(0.01)
        with lock:
            state["now"] -= 1

    async with concur.TaskGroup(thread_limit=2):
        await concur.gather(*([job] * 6))
    assert state["peak"] <= 2


async def test_gather_sync_job_failure_is_raised_bare() -> None:
    """A sync job's exception comes back from its thread bare."""

    def broken() -> None:
        raise LookupError("from a thread")

    with pytest.raises(LookupError, match="from a thread"):
        await concur.gather(broken, functools.partial(InFlight().run, 1, anyio.Event()))


async def test_gather_of_jobs_that_never_yield_lets_other_tasks_run() -> None:
    """``gather`` with a limit lets other tasks run now and then, even when no job yields."""
    other_ran = anyio.Event()

    async def sees_other() -> bool:
        return other_ran.is_set()

    async def other() -> None:
        other_ran.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        results = await concur.gather(*[sees_other() for _ in range(10_000)], limit=10)
    assert results[-1] is True


# --- gather_settled ---------------------------------------------------------------------------


async def test_gather_settled_collects_outcomes_without_cancelling() -> None:
    """Failures become ``Err`` in job order, and do not cancel the other jobs."""
    gate = anyio.Event()
    counter = InFlight()

    async def fail_then_open() -> None:
        await anyio.lowlevel.checkpoint()
        gate.set()
        raise ValueError("bad")

    outcomes = await concur.gather_settled(counter.run(1, gate), fail_then_open(), value(3))
    assert outcomes[0] == concur.Ok(1)
    assert isinstance(outcomes[1], concur.Err)
    assert isinstance(outcomes[1].error, ValueError)
    assert outcomes[2] == concur.Ok(3)
    assert counter.cancelled == 0


async def test_gather_settled_honours_limit() -> None:
    """``gather_settled`` never runs more than *limit* jobs at once."""
    counter = InFlight()
    outcomes = await concur.gather_settled(*(counter.run(i) for i in range(10)), limit=2)
    assert [o.unwrap() for o in outcomes] == list(range(10))
    assert counter.peak == 2


async def test_gather_settled_propagates_cancellation() -> None:
    """Cancelling the caller of ``gather_settled`` propagates; no outcome is returned."""
    gate = anyio.Event()
    returned = []
    with anyio.move_on_after(0) as scope:
        returned.append(await concur.gather_settled(InFlight().run(1, gate)))
    assert scope.cancelled_caught
    assert returned == []


# --- race ---------------------------------------------------------------------------------------


async def test_race_returns_the_first_value_after_the_losers_finished() -> None:
    """The first finisher's value is returned once the other jobs have finished."""
    loser_done = []

    async def loser() -> str:
        try:
            await anyio.sleep_forever()
        finally:
            loser_done.append(True)
        return "never"

    assert await concur.race(loser(), value("winner"), loser) == "winner"
    assert loser_done == [True, True]


async def test_race_raises_the_first_finishers_exception_bare() -> None:
    """A first finisher that failed makes ``race`` raise its exception, bare."""
    with pytest.raises(KeyError):
        await concur.race(fail(KeyError("k")), anyio.sleep_forever())


async def test_race_discards_the_losers_later_failures() -> None:
    """A loser that fails while being cancelled does not change the outcome."""

    async def bad_loser() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            raise RuntimeError("late")

    assert await concur.race(bad_loser(), value(1)) == 1


async def test_race_closes_jobs_that_never_start() -> None:
    """Coroutine jobs that a quick winner leaves unstarted are closed, without a warning."""

    async def instant() -> str:
        return "first"

    jobs = [value(i) for i in range(3)]
    assert await concur.race(instant(), *jobs) == "first"
    gc.collect()
    assert all(inspect.getcoroutinestate(job) == inspect.CORO_CLOSED for job in jobs)


async def test_race_timeout_and_no_jobs() -> None:
    """``race`` raises ``TimeoutError`` when no job finishes in time, ``ValueError`` for none."""
    with pytest.raises(TimeoutError):
        await concur.race(anyio.sleep_forever(), timeout=0.01)
    with pytest.raises(ValueError, match="at least one job"):
        await concur.race()


async def test_race_sync_job() -> None:
    """A sync job can win a race."""
    assert await concur.race(lambda: "thread", anyio.sleep_forever()) == "thread"


# --- first_success ----------------------------------------------------------------------------


async def test_first_success_ignores_failures_while_others_run() -> None:
    """Failures are set aside; the first success wins and the rest are cancelled."""
    cancelled = []

    async def slow() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    async def later() -> str:
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        return "ok"

    result = await concur.first_success(fail(ValueError("a")), later(), slow())
    assert result == "ok"
    assert cancelled == [True]


async def test_first_success_all_failed_is_a_group_in_job_order() -> None:
    """When every job fails, an ``ExceptionGroup`` holds the errors in job order."""

    async def late_fail() -> None:
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        raise KeyError("first job, last to fail")

    with pytest.RaisesGroup(KeyError, ValueError) as info:
        await concur.first_success(late_fail(), fail(ValueError("second")))
    assert isinstance(info.value.exceptions[0], KeyError)
    with pytest.RaisesGroup(ValueError):
        await concur.first_success(fail(ValueError("only")))


async def test_first_success_timeout_and_no_jobs() -> None:
    """``TimeoutError`` with no success in time; ``ValueError`` for no jobs."""
    with pytest.raises(TimeoutError):
        await concur.first_success(fail(ValueError("x")), anyio.sleep_forever(), timeout=0.01)
    with pytest.raises(ValueError, match="at least one job"):
        await concur.first_success()
    job = value(1)
    with pytest.raises(ValueError, match="timeout"):
        await concur.first_success(job, timeout=-1)
    assert inspect.getcoroutinestate(job) == inspect.CORO_CLOSED


# --- the error rule at its edges (issue 9, bugs 3 and 4) ---------------------------------------


async def test_gather_lone_failure_meeting_an_outside_cancellation_is_bare() -> None:
    """A job that fails as the enclosing scope is cancelled escapes gather bare."""
    with pytest.raises(Marker):
        with anyio.CancelScope() as scope:
            await concur.gather(functools.partial(cancel_then_fail, scope), anyio.sleep_forever)


async def test_first_success_returns_the_winner_when_a_loser_fails_on_cancel() -> None:
    """A loser whose own gather fails while being cancelled does not hide the winner."""
    won = anyio.Event()

    async def winner() -> str:
        await anyio.wait_all_tasks_blocked()
        won.set()
        return "win"

    async def loser() -> None:
        await concur.gather(fail_when_cancelled, anyio.sleep_forever)

    assert await concur.first_success(winner, loser) == "win"
    assert won.is_set()


async def test_race_returns_the_winner_when_a_loser_fails_on_cancel() -> None:
    """The same for race: the first to finish decides, a late failure is discarded."""

    async def winner() -> str:
        await anyio.wait_all_tasks_blocked()
        return "win"

    async def loser() -> None:
        await concur.gather(fail_when_cancelled, anyio.sleep_forever)

    assert await concur.race(winner, loser) == "win"


async def test_gather_settled_raises_only_the_callers_cancellation() -> None:
    """A settled job whose gather fails while the caller is cancelled raises no group."""
    with anyio.CancelScope() as scope:

        async def job() -> None:
            await concur.gather(functools.partial(cancel_then_fail, scope), anyio.sleep_forever)

        await concur.gather_settled(job, anyio.sleep_forever)
        pytest.fail("gather_settled returned although its caller was cancelled")
    assert scope.cancelled_caught


async def test_gather_settled_settles_a_failure_that_meets_no_cancellation() -> None:
    """Without an outside cancellation, that failure is the job's outcome."""

    async def job() -> None:
        await concur.gather(functools.partial(fail, ValueError("x")))

    (outcome,) = await concur.gather_settled(job)
    assert isinstance(outcome, concur.Err)
    assert isinstance(outcome.error, ValueError)


def _interrupting_job(kind: type[BaseException]) -> Any:
    async def job() -> None:
        await anyio.lowlevel.checkpoint()
        raise kind()

    return job


async def _call_it(fn: Any) -> Any:
    return await fn()


_HELPERS: dict[str, Any] = {
    "gather": lambda job, other: concur.gather(job, other),
    "gather_settled": lambda job, other: concur.gather_settled(job, other),
    "race": lambda job, other: concur.race(job, other),
    "first_success": lambda job, other: concur.first_success(job, other),
    "map_async": lambda job, other: concur.map_async(_call_it, [job, other]),
}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("helper", sorted(_HELPERS))
def test_an_interrupt_in_a_job_reaches_the_caller_bare(
    helper: str, kind: type[BaseException], backend: str
) -> None:
    """A job's KeyboardInterrupt or SystemExit cancels the rest and is raised bare."""
    sibling_cancelled = []

    async def other() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            sibling_cancelled.append(True)
            raise

    async def main() -> BaseException | None:
        try:
            await _HELPERS[helper](_interrupting_job(kind), other)
        except kind as exc:
            return exc
        return None

    where, exc = outcome_of(main, backend)
    assert where == "caught"
    assert type(exc) is kind
    assert sibling_cancelled == [True]


def test_system_exit_in_a_race_job_ends_concur_run_with_its_status() -> None:
    """``sys.exit(3)`` in a race job under concur.run on trio exits with status 3."""
    code = (
        "import sys, anyio, concur\n"
        "async def job():\n"
        "    await anyio.lowlevel.checkpoint()\n"
        "    sys.exit(3)\n"
        "async def main():\n"
        "    await concur.race(job, anyio.sleep_forever)\n"
        "concur.run(main, backend='trio')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 3, result.stderr.decode()[-2000:]


@pytest.mark.parametrize("helper", [concur.gather, concur.gather_settled, concur.race])
async def test_a_list_of_coroutines_is_refused_and_closed(helper: Any) -> None:
    """gather([c1, c2]) says to unpack the list, and closes its coroutines (no warning)."""
    c1, c2 = value(1), value(2)
    with pytest.raises(TypeError, match=r"unpack it: \w+\(\*jobs\)"):
        await helper([c1, c2])
    assert c1.cr_frame is None
    assert c2.cr_frame is None
