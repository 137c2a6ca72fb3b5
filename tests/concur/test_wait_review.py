"""Review of map_async, gather and amap: calls that never yield, and outside cancellation."""

from __future__ import annotations

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


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_map_async_in_a_cancelled_scope_stops_early(kind: str) -> None:
    """A cancelled ``map_async`` over calls that never yield stops long before the input ends."""
    reads = [0]
    items: Iterable[int] | AsyncIterator[int] = (
        counted(N, reads) if kind == "sync" else acounted(N, reads)
    )
    with anyio.CancelScope() as scope:
        scope.cancel()
        await concur.map_async(at_once, items)
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
