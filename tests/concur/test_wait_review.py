"""Review of map_async, gather and amap: calls that never yield, outside cancellation, sync fns."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator

import anyio
import pytest

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


# --- a sync fn under a thread cap smaller than the map's limit ---------------------------------


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
