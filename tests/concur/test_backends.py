"""The asyncio fast path for thread calls keeps anyio's worker-thread contract."""

from __future__ import annotations

import functools
import queue
import random
import threading

import anyio
import anyio.from_thread
import pytest
import sniffio

import concur


async def test_anyio_from_thread_works_inside_a_thread_call() -> None:
    """``anyio.from_thread.run`` and ``run_sync`` reach the caller's loop from the thread."""

    async def on_loop(x: int) -> int:
        await anyio.sleep(0)
        return x + 1

    def in_thread() -> tuple[int, int]:
        return anyio.from_thread.run(on_loop, 1), anyio.from_thread.run_sync(lambda: 5)

    assert await concur.to_thread(in_thread) == (2, 5)


async def test_the_thread_sees_no_async_library() -> None:
    """Inside the worker thread sniffio finds no async library, as in anyio's workers."""

    def probe() -> str:
        try:
            return sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            return "none"

    assert await concur.to_thread(probe) == "none"


async def test_context_variables_reach_the_thread() -> None:
    """The thread runs in a copy of the caller's context: ambient settings are visible."""
    limiter = anyio.CapacityLimiter(3)

    def borrowed_from_inside() -> float:
        return concur.scope().settings.current_limiter().total_tokens

    with concur.scope(limiter=limiter):
        assert await concur.to_thread(borrowed_from_inside) == 3


def test_asyncio_workers_are_named_and_end_with_the_loop() -> None:
    """On asyncio the call runs on a ``concur worker N`` thread, gone once the run ends."""

    async def main() -> str:
        return await concur.to_thread(lambda: threading.current_thread().name)

    name = anyio.run(main, backend="asyncio")
    assert name.startswith("concur worker ")
    assert not [t for t in threading.enumerate() if t.name.startswith("concur worker")]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_sequential_calls_reuse_an_idle_worker(anyio_backend: str) -> None:
    """On asyncio, fifty calls one after another all run on concur's one idle worker."""
    first = await concur.to_thread(threading.get_ident)
    idents = {await concur.to_thread(threading.get_ident) for _ in range(50)}
    assert idents == {first}


@pytest.mark.parametrize("abandon", [False, True])
async def test_a_failure_in_the_thread_propagates_as_it_is(abandon: bool) -> None:
    """The thread function's exception reaches the caller unwrapped, traceback intact."""

    def fail() -> None:
        raise KeyError("inner")

    with pytest.raises(KeyError, match="inner") as info:
        await concur.to_thread(fail, abandon_on_cancel=abandon)
    assert any(entry.name == "fail" for entry in info.traceback)


# --- the pool's accounting (issue 9, bugs 1 and 2) ---------------------------------------------


async def _warm_up(n: int) -> None:
    """Run *n* thread calls at once, so that *n* idle workers wait for the next calls."""
    barrier = threading.Barrier(n)
    async with concur.TaskGroup(thread_limit=n) as tg:
        for _ in range(n):
            tg.spawn(barrier.wait, 10.0)


@pytest.mark.parametrize("warm", [False, True])
async def test_calls_spawned_in_one_iteration_each_get_a_thread(warm: bool) -> None:
    """Four calls spawned together meet at a barrier: each has a thread of its own."""
    if warm:
        await _warm_up(1)  # one idle worker: every submit of one iteration used to see it
    barrier = threading.Barrier(4)
    async with concur.TaskGroup(thread_limit=4) as tg:
        handles = [tg.spawn(barrier.wait, 10.0) for _ in range(4)]
    assert sorted([h.return_value for h in handles]) == [0, 1, 2, 3]


async def test_a_producer_and_a_consumer_thread_call_meet() -> None:
    """A ``queue.get`` in one thread call is answered by a ``put`` in another."""
    await _warm_up(1)
    q: queue.Queue[int] = queue.Queue()
    async with concur.TaskGroup(thread_limit=2) as tg:
        got = tg.spawn(q.get, True, 10.0)
        tg.spawn(q.put, 42)
    assert got.return_value == 42


async def test_no_call_is_lost_when_idle_workers_retire(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a 1 ms idle timeout, calls that keep landing as workers retire all complete."""
    from concur._core import asyncio_pool as fast

    monkeypatch.setattr(fast, "IDLE_SECONDS", 0.001)
    rng = random.Random(9)
    for i in range(400):
        # abandoning calls under a bound: a lost call fails the test instead of hanging it
        with anyio.fail_after(5):
            assert await concur.to_thread(int, i, abandon_on_cancel=True) == i
        # let a worker time out, so that the next call lands in its retirement window
        await anyio.sleep(rng.uniform(0.0005, 0.0015))
        if i % 40 == 0:
            with anyio.fail_after(5):
                jobs = [functools.partial(int, j) for j in range(4)]
                assert await concur.gather(*jobs) == [0, 1, 2, 3]


async def test_worker_threads_are_named_concur_worker() -> None:
    """On both fast paths the thread running a call is named "concur worker...", not "claimed"."""
    name = await concur.to_thread(lambda: threading.current_thread().name)
    assert name.startswith("concur worker")
