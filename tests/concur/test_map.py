"""map_async and amap: order, limits, lazy input, rates, back pressure and the error rule.

On asyncio and trio.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from wait_helpers import InFlight, Marker, assert_rate, cancel_then_fail, outcome_of, value

import concur

N = 100_000


def counted(n: int, reads: list[int]) -> Iterator[int]:
    for i in range(n):
        reads[0] += 1
        yield i


async def acounted(n: int, reads: list[int]) -> AsyncIterator[int]:
    for i in range(n):
        reads[0] += 1
        yield i


async def at_once(x: int) -> int:
    """A call that returns without a checkpoint."""
    return x


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

    firsts: list[int] = []
    escaped: list[BaseException] = []
    for limit in (1, 2, 7):
        for _ in range(20):
            try:
                async with concur.amap(instant, range(50), limit=limit, buffer=0) as results:
                    async for first in results:
                        firsts.append(first)
                        break
            except Exception as exc:  # what the test is about: nothing may escape the block
                escaped.append(exc)
    assert escaped == []
    assert firsts == [0] * 60  # every block took its first result (in input order) and left


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
    """``amap`` holds at most limit + buffer items (running or done, not yet consumed),
    whatever the number of items: it reads the input only when there is room."""
    counter = InFlight()
    read = 0

    def items() -> Iterator[int]:
        nonlocal read
        for i in range(5000):
            read += 1
            yield i

    most = 0
    async with concur.amap(counter.run, items(), limit=8, buffer=4) as results:
        count = 0
        async for _ in results:
            count += 1
            most = max(most, read - count)
            assert read - count <= 12
    assert count == 5000
    assert most > 0  # results were produced ahead of the consumer, up to the bound


# --- calls that never yield ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_map_async_over_calls_that_never_yield_lets_other_tasks_run(kind: str) -> None:
    """``map_async`` lets other tasks run now and then, even when nothing it calls yields."""
    other_ran = anyio.Event()

    async def sees_other(_: int) -> bool:
        return other_ran.is_set()

    async def other() -> None:
        other_ran.set()

    items: Iterable[int] | AsyncIterator[int] = (
        counted(10_000, [0]) if kind == "sync" else acounted(10_000, [0])
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        results = await concur.map_async(sees_other, items)
    assert results[-1] is True


async def test_map_async_in_a_cancelled_scope_stops_early() -> None:
    """A cancelled ``map_async`` over calls that never yield stops long before the input ends."""
    reads = [0]
    with anyio.CancelScope() as scope:
        scope.cancel()
        await concur.map_async(at_once, counted(N, reads))
    assert scope.cancelled_caught
    assert reads[0] < N


async def test_amap_consumer_that_never_waits_sees_cancellation_within_limit_plus_buffer() -> None:
    """A consumer that never awaits sees an outside cancellation within limit + buffer results."""
    taken_after_cancel = 0
    with anyio.CancelScope() as scope:
        async with concur.amap(at_once, range(N), limit=4, buffer=4) as results:
            async for _ in results:
                if scope.cancel_called:
                    taken_after_cancel += 1
                else:
                    scope.cancel()
    assert scope.cancelled_caught
    assert taken_after_cancel <= 4 + 4


# --- a sync fn under a thread cap smaller than the map's limit ----------------------------------


async def test_map_async_sync_fn_reads_an_item_only_when_a_thread_is_free() -> None:
    """Under a thread cap below *limit*, a sync fn's items are read only as threads free up."""
    reads = [0]
    started: list[int] = []
    gate = threading.Event()

    def slow(i: int) -> int:
        started.append(i)
        if i == 0:
            gate.wait(10)
        return i

    async def watch() -> None:
        await anyio.wait_all_tasks_blocked()
        unstarted.append(reads[0] - len(started))
        gate.set()

    unstarted: list[int] = []
    async with concur.TaskGroup(thread_limit=1) as tg:
        tg.spawn(watch)
        results = await concur.map_async(slow, acounted(6, reads), limit=4)
    assert results == list(range(6))
    assert unstarted[0] <= 1


@pytest.mark.parametrize("make", ["map_async", "amap"])
async def test_sync_fn_thread_starts_follow_the_rate_under_a_thread_cap(make: str) -> None:
    """A sync fn's thread starts follow the rate even when the thread cap holds calls back."""
    starts: list[float] = []

    def job(i: int) -> int:
        starts.append(time.monotonic())
        if i == 0:
            time.sleep(0.3)  # a slow first call: tokens must not pile up behind it
        return i

    with concur.scope(thread_limit=1):
        if make == "map_async":
            await concur.map_async(job, range(5), limit=4, max_per_second=20)
        else:
            async with concur.amap(job, range(5), limit=4, max_per_second=20) as results:
                async for _ in results:
                    pass
    assert len(starts) == 5
    starts.sort()
    for i in range(len(starts)):  # the rule, with room for a thread that starts late
        for j in range(i + 1, len(starts)):
            assert starts[j] - starts[i] >= (j - i) / 20 - 0.01, (i, j)


# --- the error rule at its edges (issue 9, bugs 3 and 4) ----------------------------------------


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


# --- ordering -----------------------------------------------------------------------------------


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
