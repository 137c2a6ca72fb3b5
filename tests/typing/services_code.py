"""User-style code of the execution services (issue 12), type-checked, never run.

Each ``assert_type`` states what a checker must infer; each ``# type: ignore[...]`` line is
a misuse the checkers must reject.
"""

# pyright: strict, reportUnnecessaryTypeIgnoreComment=true

from __future__ import annotations

from typing import assert_type

import anyio

import concur


def parse(text: str) -> int:
    return int(text)


async def fetch(url: str) -> bytes:
    await anyio.sleep(0)
    return url.encode()


@concur.retry(attempts=5, on=(OSError,), delay=0.01)
def flaky_sync(n: int) -> float:
    return n / 2


@concur.retry(attempts=2)
async def flaky_async(url: str) -> bytes:
    return await fetch(url)


@concur.timeout(1.5)
async def bounded_fetch(url: str) -> bytes:
    return await fetch(url)


@concur.limit(4)
async def limited_fetch(url: str) -> bytes:
    return await fetch(url)


async def decorators() -> None:
    assert_type(flaky_sync(3), float)
    assert_type(await flaky_async("u"), bytes)
    assert_type(await bounded_fetch("u"), bytes)
    assert_type(await limited_fetch("u"), bytes)
    flaky_sync("3")  # type: ignore[arg-type]
    await bounded_fetch(1)  # type: ignore[arg-type]


async def strategies() -> None:
    outcomes = await concur.Sequential().run([parse, parse], "1")
    for outcome in outcomes:
        if not isinstance(outcome, concur.Skipped):
            outcome.unwrap()
    await concur.Concurrent(limit=2).run([parse], "1", timeout=2.0)
    await concur.Pipeline([[0], [1]]).run([parse, parse], "1")


async def pools() -> None:
    async with concur.ThreadPool(2) as threads:
        assert_type(await threads.run(parse, "4"), int)
        await threads.run(parse, 4)  # type: ignore[arg-type]
        assert_type(threads.statistics(), concur.PoolStatistics)
    async with concur.ProcessPool(2) as processes:
        assert_type(await processes.run(parse, "4"), int)


async def primitives() -> None:
    lock = concur.RLock()
    async with lock, lock:
        pass
    barrier = concur.Barrier(2)
    assert_type(await barrier.wait(), int)
    per_host = concur.KeyedLimiter(2, total=8)
    async with per_host.hold("example.org"):
        pass
