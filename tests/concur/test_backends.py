"""The asyncio fast path for thread calls keeps anyio's worker-thread contract."""

from __future__ import annotations

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
