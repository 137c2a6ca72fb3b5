"""gather, gather_settled, race, first_success, map_async and amap, on asyncio and trio."""

from __future__ import annotations

import functools
import gc
import inspect
import subprocess
import sys
import threading
import traceback
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from wait_helpers import (
    InFlight,
    Marker,
    assert_rate,
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


# --- map_async ----------------------------------------------------------------------------------


async def test_map_async_orders_results_and_honours_limit() -> None:
    """Results come in input order and never more than *limit* calls run at once."""
    counter = InFlight()
    assert await concur.map_async(counter.run, range(50), limit=4) == list(range(50))
    assert counter.peak == 4


async def test_map_async_unordered_returns_every_result() -> None:
    """``ordered=False`` returns every result, in completion order."""

    async def job(i: int) -> int:
        for _ in range(i % 3):
            await anyio.lowlevel.checkpoint()
        return i

    results = await concur.map_async(job, range(12), limit=6, ordered=False)
    assert sorted(results) == list(range(12))
    assert results != list(range(12))


async def test_map_async_sync_fn_runs_in_threads() -> None:
    """A sync *fn* runs in worker threads."""
    main = threading.get_ident()
    idents = await concur.map_async(lambda _: threading.get_ident(), range(4), limit=2)
    assert main not in idents


async def test_map_async_reads_input_only_when_a_slot_is_free() -> None:
    """An item is read only when a slot is free; at most one is read and not started."""
    counter = InFlight()
    reads = 0

    async def items() -> AsyncIterator[int]:
        nonlocal reads
        for i in range(20):
            assert reads == counter.started  # every item read so far has started
            assert counter.now < 3  # a slot is free
            reads += 1
            yield i

    assert await concur.map_async(counter.run, items(), limit=3) == list(range(20))


async def test_map_async_sync_input_is_lazy() -> None:
    """A sync iterable is read lazily, one item per free slot."""
    counter = InFlight()
    reads = 0

    def items() -> Iterator[int]:
        nonlocal reads
        for i in range(20):
            assert reads == counter.started
            reads += 1
            yield i

    assert await concur.map_async(counter.run, items(), limit=3) == list(range(20))


async def test_map_async_rate_wait_holds_at_most_one_unstarted_item() -> None:
    """With a rate limit, the item waiting for its token is the only one read and not started."""
    counter = InFlight()
    reads = 0

    async def items() -> AsyncIterator[int]:
        nonlocal reads
        for i in range(8):
            assert reads == counter.started
            reads += 1
            yield i

    results = await concur.map_async(counter.run, items(), limit=4, max_per_second=500)
    assert results == list(range(8))


async def test_gather_sync_job_failure_is_raised_bare() -> None:
    """A sync job's exception comes back from its thread bare."""

    def broken() -> None:
        raise LookupError("from a thread")

    with pytest.raises(LookupError, match="from a thread"):
        await concur.gather(broken, functools.partial(InFlight().run, 1, anyio.Event()))


async def test_map_async_failure_is_bare_and_closes_the_input() -> None:
    """One failing call is raised bare, stops reading, and closes an async generator."""
    closed = []
    reads = 0

    async def items() -> AsyncIterator[int]:
        nonlocal reads
        try:
            for i in range(1000):
                reads += 1
                yield i
        finally:
            closed.append(True)

    async def job(i: int) -> int:
        await anyio.lowlevel.checkpoint()
        if i == 5:
            raise ValueError(i)
        return i

    with pytest.raises(ValueError, match="5"):
        await concur.map_async(job, items(), limit=2)
    assert closed == [True]
    assert reads < 20


async def test_map_async_cancelled_from_outside_closes_the_input() -> None:
    """Outside cancellation cancels the calls and closes the input."""
    closed = []
    gate = anyio.Event()
    counter = InFlight()

    async def items() -> AsyncIterator[int]:
        try:
            for i in range(100):
                yield i
        finally:
            closed.append(True)

    async with anyio.create_task_group() as tg:

        async def caller() -> None:
            await concur.map_async(functools.partial(counter.run, gate=gate), items(), limit=3)

        tg.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        assert counter.now == 3
        tg.cancel_scope.cancel()
    assert counter.cancelled == 3
    assert closed == [True]


@pytest.mark.parametrize(
    ("kwargs", "error", "word"),
    [
        ({"limit": 0}, ValueError, "limit"),
        ({"limit": True}, TypeError, "limit"),
        ({"max_per_second": 0}, ValueError, "max_per_second"),
        ({"max_per_second": -1.0}, ValueError, "max_per_second"),
        ({"max_per_second": 1, "burst": 0}, ValueError, "burst"),
        ({"burst": 0}, ValueError, "burst"),
    ],
)
async def test_map_async_bad_options(
    kwargs: dict[str, Any], error: type[Exception], word: str
) -> None:
    """Bad options raise ``ValueError``/``TypeError`` naming the argument."""
    with pytest.raises(error, match=word):
        await concur.map_async(value, [1], **kwargs)
    with pytest.raises(error, match=word):
        concur.amap(value, [1], **kwargs)


async def test_map_async_bad_fn_and_items() -> None:
    """A non-callable *fn* or a non-iterable *items* raises ``TypeError``."""
    with pytest.raises(TypeError, match="fn must be callable"):
        await concur.map_async(3, [1])  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="items"):
        await concur.map_async(value, 3)  # type: ignore[call-overload]
    job = value(1)
    with pytest.raises(TypeError, match="not a coroutine object"):
        concur.amap(job, [1])  # type: ignore[call-overload]
    assert inspect.getcoroutinestate(job) == inspect.CORO_CLOSED


async def test_map_async_rate_limit_spreads_starts() -> None:
    """With a rate limit, starts follow the token bucket (a lower bound on their spread)."""
    starts: list[float] = []

    async def job(i: int) -> int:
        starts.append(anyio.current_time())
        await anyio.lowlevel.checkpoint()
        return i

    assert await concur.map_async(job, range(12), limit=12, max_per_second=100, burst=3) == list(
        range(12)
    )
    assert_rate(starts, 100, 3)
    assert starts[-1] - starts[0] >= (12 - 3) / 100 - 1e-3


async def test_map_async_notices_the_end_without_a_rate_wait() -> None:
    """The end of a finite input is noticed before the rate-limit wait (no refill needed)."""
    starts: list[float] = []

    async def job(i: int) -> int:
        starts.append(anyio.current_time())
        return i

    # one token per 1000 s: waiting for a refill would hit the test's bound instead
    assert await concur.map_async(job, range(2), max_per_second=1e-3, burst=2) == [0, 1]
    async with concur.amap(job, range(2), max_per_second=1e-3, burst=2) as results:
        assert sorted([r async for r in results]) == [0, 1]
    assert len(starts) == 4


# --- amap ---------------------------------------------------------------------------------------


async def test_awaiting_amap_points_to_map_async() -> None:
    """``await concur.amap(...)`` raises ``TypeError`` naming ``map_async``."""
    with pytest.raises(TypeError, match="map_async"):
        await concur.amap(value, [1])  # type: ignore[misc]


async def test_amap_streams_every_result() -> None:
    """Unordered by default, ``amap`` yields every result once."""
    counter = InFlight()
    async with concur.amap(counter.run, range(30), limit=4) as results:
        got = [r async for r in results]
    assert sorted(got) == list(range(30))
    assert counter.peak == 4


async def test_amap_ordered_yields_in_input_order() -> None:
    """``ordered=True`` yields results in input order."""

    async def job(i: int) -> int:
        for _ in range((7 * i) % 5):
            await anyio.lowlevel.checkpoint()
        return i

    async with concur.amap(job, range(40), limit=5, ordered=True) as results:
        assert [r async for r in results] == list(range(40))


async def test_amap_back_pressure_stops_production() -> None:
    """A consumer that stops reading stops production at limit + buffer items."""
    counter = InFlight()
    reads = 0

    def items() -> Iterator[int]:
        nonlocal reads
        for i in range(100):
            reads += 1
            yield i

    async with concur.amap(counter.run, items(), limit=2, buffer=3) as results:
        await anyio.wait_all_tasks_blocked()
        assert counter.started == 5
        assert reads == 5
        await results.__anext__()
        await anyio.wait_all_tasks_blocked()
        assert counter.started == 6
        assert counter.peak <= 2


async def test_amap_ordered_back_pressure_counts_waiting_results() -> None:
    """Ordered: finished results waiting for an earlier one count against the buffer."""
    gate = anyio.Event()
    counter = InFlight()

    async def job(i: int) -> int:
        if i == 0:
            await gate.wait()
            return i
        return await counter.run(i)

    async with concur.amap(job, range(100), limit=3, buffer=2, ordered=True) as results:
        await anyio.wait_all_tasks_blocked()
        assert counter.started == 4  # items 1..4 finished; item 0 still runs
        gate.set()
        assert [await results.__anext__() for _ in range(3)] == [0, 1, 2]


async def test_amap_leaving_before_reading_cancels_and_closes() -> None:
    """Leaving the block before reading cancels the running calls and closes the input."""
    gate = anyio.Event()
    counter = InFlight()
    closed = []

    async def items() -> AsyncIterator[int]:
        try:
            for i in range(100):
                yield i
        finally:
            closed.append(True)

    async with concur.amap(functools.partial(counter.run, gate=gate), items(), limit=3):
        await anyio.wait_all_tasks_blocked()
        assert counter.now == 3
    assert counter.cancelled == 3
    assert counter.started == 3
    assert closed == [True]


async def test_amap_break_closes_the_input() -> None:
    """A ``break`` out of the results leaves nothing running and closes the input."""
    closed = []
    counter = InFlight()

    async def items() -> AsyncIterator[int]:
        try:
            for i in range(1000):
                yield i
        finally:
            closed.append(True)

    async with concur.amap(counter.run, items(), limit=4) as results:
        async for r in results:
            if r >= 3:
                break
    assert counter.now == 0
    assert closed == [True]
    with pytest.raises(anyio.ClosedResourceError):
        await results.__anext__()


async def test_amap_leaving_as_workers_finish_raises_nothing() -> None:
    """Leaving the block just as calls finish never lets a worker's error escape."""

    async def instant(i: int) -> int:
        return i

    for limit in (1, 2, 7):
        for _ in range(20):
            async with concur.amap(instant, range(50), limit=limit, buffer=0) as results:
                async for _ in results:
                    break


async def test_amap_cancelled_from_outside() -> None:
    """Outside cancellation of the consumer cancels the calls and closes the input."""
    closed = []
    counter = InFlight()
    gate = anyio.Event()

    def items() -> Iterator[int]:
        try:
            yield from range(1000)
        finally:
            closed.append(True)

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def consumer() -> None:
                async with concur.amap(
                    functools.partial(counter.run, gate=gate), items(), limit=2
                ) as rs:
                    async for _ in rs:
                        pass

            tg.start_soon(consumer)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
    assert counter.cancelled == 2
    assert closed == [True]


async def test_amap_failure_is_raised_bare_from_the_block() -> None:
    """A failing call cancels the body and is raised bare from the block."""
    reached_end = []

    async def job(i: int) -> int:
        await anyio.lowlevel.checkpoint()
        if i == 3:
            raise ValueError("three")
        return i

    async def consume() -> None:
        async with concur.amap(job, range(100), limit=2) as results:
            async for _ in results:
                pass
            reached_end.append(True)

    with pytest.raises(ValueError, match="three"):
        await consume()
    assert reached_end == []


async def test_amap_body_error_is_raised_bare() -> None:
    """An exception in the body is raised bare after the calls are cancelled."""

    async def consume() -> None:
        async with concur.amap(value, range(100)) as results:
            await results.__anext__()
            raise KeyError("body")

    with pytest.raises(KeyError):
        await consume()


async def test_amap_sync_fn_and_async_input() -> None:
    """A sync *fn* over an async iterable streams its results."""

    async def items() -> AsyncIterator[int]:
        for i in range(10):
            yield i

    async with concur.amap(lambda i: i * 2, items(), limit=3, ordered=True) as results:
        assert [r async for r in results] == [i * 2 for i in range(10)]


async def test_amap_empty_input() -> None:
    """An empty input gives an empty stream."""
    async with concur.amap(value, []) as results:
        assert [r async for r in results] == []


async def test_amap_rate_limit_spreads_starts() -> None:
    """``amap`` with a rate limit follows the token bucket."""
    starts: list[float] = []

    async def job(i: int) -> int:
        starts.append(anyio.current_time())
        return i

    async with concur.amap(job, range(10), limit=5, max_per_second=200, burst=2) as results:
        assert sorted([r async for r in results]) == list(range(10))
    assert_rate(starts, 200, 2)


async def test_amap_bad_buffer_and_reentry() -> None:
    """A negative buffer is refused at the call; an amap cannot be entered twice."""
    with pytest.raises(ValueError, match="buffer"):
        concur.amap(value, [1], buffer=-1)
    mapping = concur.amap(value, [1])
    async with mapping as results:
        assert [r async for r in results] == [1]
    with pytest.raises(RuntimeError, match="already"):
        await mapping.__aenter__()


async def test_amap_second_consumer_is_refused() -> None:
    """A second task iterating while the first waits gets ``BusyResourceError``."""
    gate = anyio.Event()
    job = functools.partial(InFlight().run, gate=gate)
    async with concur.amap(job, range(3)) as results, anyio.create_task_group() as tg:
        tg.start_soon(results.__anext__)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(anyio.BusyResourceError):
            await results.__anext__()
        tg.cancel_scope.cancel()


async def test_amap_flat_memory_bookkeeping() -> None:
    """``amap`` keeps at most limit + buffer results, whatever the number of items."""
    counter = InFlight()
    async with concur.amap(counter.run, range(5000), limit=8, buffer=4) as results:
        count = 0
        async for _ in results:
            count += 1
            internal = results._ready  # type: ignore[attr-defined]
            assert len(internal) <= 12
    assert count == 5000


# --- the error rule at its edges (issue 9, bugs 3 and 4) ---------------------------------------


async def test_gather_lone_failure_meeting_an_outside_cancellation_is_bare() -> None:
    """A job that fails as the enclosing scope is cancelled escapes gather bare."""
    with pytest.raises(Marker):
        with anyio.CancelScope() as scope:
            await concur.gather(functools.partial(cancel_then_fail, scope), anyio.sleep_forever)


async def test_map_async_lone_failure_meeting_an_outside_cancellation_is_bare() -> None:
    """The same for map_async: one real failure plus cancellations is that failure."""

    async def job(i: int) -> None:
        if i == 0:
            await cancel_then_fail(scope)
        await anyio.sleep_forever()

    with pytest.raises(Marker):
        with anyio.CancelScope() as scope:
            await concur.map_async(job, range(3))


async def test_amap_lone_failure_meeting_an_outside_cancellation_is_bare() -> None:
    """The same for an amap block."""

    async def job(i: int) -> None:
        if i == 0:
            await cancel_then_fail(scope)
        await anyio.sleep_forever()

    async def consume() -> None:
        async with concur.amap(job, range(3)) as results:
            async for _ in results:
                pass

    with pytest.raises(Marker):
        with anyio.CancelScope() as scope:
            await consume()


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


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_in_an_amap_call_reaches_the_caller_bare(
    kind: type[BaseException], backend: str
) -> None:
    """The same for a call of an amap block."""

    async def job(i: int) -> int:
        if i == 1:
            raise kind()
        await anyio.sleep_forever()
        return i

    async def main() -> BaseException | None:
        try:
            async with concur.amap(job, range(3)) as results:
                async for _ in results:
                    pass
        except kind as exc:
            return exc
        return None

    where, exc = outcome_of(main, backend)
    assert where == "caught"
    assert type(exc) is kind


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


async def ident(x: int) -> int:
    return x


@pytest.mark.parametrize("value", [1, "yes", None])
async def test_ordered_must_be_a_bool(value: Any) -> None:
    """ordered= takes True or False only, for map_async, amap and streams.map."""
    with pytest.raises(TypeError, match="ordered must be True or False"):
        await concur.map_async(ident, [1], ordered=value)
    with pytest.raises(TypeError, match="ordered must be True or False"):
        concur.amap(ident, [1], ordered=value)
    with pytest.raises(TypeError, match="ordered must be True or False"):
        concur.streams.map([1], ident, ordered=value)


async def test_map_async_amap_and_streams_map_keep_input_order_by_default() -> None:
    """One ordering default: all three yield results in input order unless told not to."""
    gates = [anyio.Event() for _ in range(3)]

    async def job(i: int) -> int:
        await gates[i].wait()
        return i * i

    async def release_backwards() -> None:
        for gate in reversed(gates):
            await anyio.wait_all_tasks_blocked()
            gate.set()

    async def via_amap() -> list[int]:
        async with concur.amap(job, range(3)) as results:
            return [r async for r in results]

    async def via_streams_map() -> list[int]:
        async with concur.streams.map(range(3), job) as results:
            return [r async for r in results]

    for run in (functools.partial(concur.map_async, job, range(3)), via_amap, via_streams_map):
        gates[:] = [anyio.Event() for _ in range(3)]
        async with anyio.create_task_group() as tg:
            tg.start_soon(release_backwards)
            assert await run() == [0, 1, 4]


@pytest.mark.parametrize("helper", [concur.gather, concur.gather_settled, concur.race])
async def test_a_list_of_coroutines_is_refused_and_closed(helper: Any) -> None:
    """gather([c1, c2]) says to unpack the list, and closes its coroutines (no warning)."""
    c1, c2 = value(1), value(2)
    with pytest.raises(TypeError, match=r"unpack it: \w+\(\*jobs\)"):
        await helper([c1, c2])
    assert c1.cr_frame is None
    assert c2.cr_frame is None
