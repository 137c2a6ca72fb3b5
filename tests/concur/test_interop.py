"""concur.run, syncify/asyncify, from_thread and wait_future."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import pytest
from concur_helpers import (
    BACKENDS,
    WAIT,
    SyncJobPeak,
    cleanup_task,
    context_seen,
    double,
    fail,
    ident,
    in_thread,
    interrupt_when,
    main_thread_only,  # noqa: F401  (a fixture)
    new_threads,
    no_loop_thread_left,  # noqa: F401  (an autouse fixture)
    request_id,
)

import concur

# --- concur.run -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_without_a_loop_runs_in_the_calling_thread(backend: str) -> None:
    """With no loop in the thread, ``run`` is ``anyio.run``: same thread, value, exception."""
    assert concur.run(ident, backend=backend) == threading.get_ident()  # type: ignore[arg-type]
    assert concur.run(double, 21, backend=backend) == 42  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="boom"):
        concur.run(fail, "boom", backend=backend)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_run_inside_a_running_loop_uses_a_thread_that_ends(backend: str) -> None:
    """From sync code on a running loop, ``run`` uses a loop thread that is gone after."""
    before = set(threading.enumerate())
    here = threading.get_ident()
    assert concur.run(ident, backend=backend) != here  # type: ignore[arg-type]
    assert concur.run(double, 4, backend=backend) == 8  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="inner"):
        concur.run(fail, "inner", backend=backend)  # type: ignore[arg-type]
    assert new_threads(before) == []


async def test_run_in_a_worker_thread_uses_the_parent_loop() -> None:
    """In a ``concur.to_thread`` or ``anyio.to_thread`` thread, ``run`` uses the parent loop."""
    here = threading.get_ident()
    assert await concur.to_thread(concur.run, ident) == here
    assert (
        await anyio.to_thread.run_sync(functools.partial(concur.run, ident, backend="trio")) == here
    )


def test_run_refuses_bad_input() -> None:
    """An unknown backend, a coroutine object or a sync function is a clear error."""
    with pytest.raises(ValueError, match="backend"):
        concur.run(ident, backend="curio")  # type: ignore[arg-type]
    coro = ident()
    with pytest.raises(TypeError, match="not a coroutine object"):
        concur.run(coro)  # type: ignore[arg-type]
    coro.close()
    with pytest.raises(TypeError, match="not an async function"):
        concur.run(lambda: 1)  # type: ignore[arg-type,return-value]


# --- context -------------------------------------------------------------------------------


async def test_scope_settings_reach_concur_run_from_a_loop_and_a_worker() -> None:
    """``concur.run`` on a background thread and on the parent loop sees the caller's context."""
    token = request_id.set("r-2")
    try:
        with concur.scope(timeout=3):
            expected = ("r-2", 3, "warn")
            assert concur.run(context_seen) == expected
            assert concur.run(context_seen, backend="trio") == expected
            assert await concur.to_thread(concur.run, context_seen) == expected
    finally:
        request_id.reset(token)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_thread_limit_set_on_a_loop_caps_concur_run(backend: str) -> None:
    """A ``scope(thread_limit=...)`` entered on a loop caps thread calls in ``concur.run``."""
    peak = SyncJobPeak()

    async def three() -> list[int]:
        return await concur.map_async(peak.job, range(3), limit=3)

    with concur.scope(thread_limit=1):
        assert concur.run(three, backend=backend) == [0, 1, 2]  # type: ignore[arg-type]
    assert peak.peak == 1


# --- Ctrl-C ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("main_thread_only")
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_in_concur_run_without_a_loop(backend: str) -> None:
    """A real SIGINT during ``concur.run`` (no loop in the thread) runs the cleanup and raises."""
    started, cleaned = threading.Event(), threading.Event()
    work = cleanup_task(started, cleaned, [])
    interrupter = interrupt_when(started)
    with pytest.raises(KeyboardInterrupt):
        concur.run(work, backend=backend)  # type: ignore[arg-type]
    interrupter.join(WAIT)
    assert cleaned.is_set()


@pytest.mark.usefixtures("main_thread_only")
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_in_concur_run_inside_a_loop(backend: str) -> None:
    """A real SIGINT during ``concur.run`` called on a running loop cancels, cleans up, raises."""
    started, cleaned = threading.Event(), threading.Event()
    cancelled: list[bool] = []
    work = cleanup_task(started, cleaned, cancelled)

    async def cell() -> None:  # sync code on a running loop, as in a notebook cell
        concur.run(work, backend=backend)  # type: ignore[arg-type]

    loop = asyncio.new_event_loop()  # no SIGINT handler of its own, like a kernel's loop
    try:
        interrupter = interrupt_when(started)
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(cell())
        interrupter.join(WAIT)
    finally:
        loop.close()
    assert cleaned.is_set()
    assert cancelled == [True]


@pytest.mark.usefixtures("main_thread_only")
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_second_ctrl_c_in_concur_run_inside_a_loop_raises_at_once(backend: str) -> None:
    """A second SIGINT in ``concur.run`` on a loop raises at once; its thread ends after cleanup."""
    started, cleaning, release, cleaned = (threading.Event() for _ in range(4))

    async def work() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cleaning.set()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(release.wait, WAIT)
            cleaned.set()

    async def cell() -> None:
        concur.run(work, backend=backend)  # type: ignore[arg-type]

    loop = asyncio.new_event_loop()
    try:
        first, second = interrupt_when(started), interrupt_when(cleaning)
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(cell())
        first.join(WAIT)
        second.join(WAIT)
    finally:
        loop.close()
    assert not cleaned.is_set()
    release.set()
    assert cleaned.wait(WAIT)
    for thread in threading.enumerate():
        if thread.name.startswith("concur.run-"):
            thread.join(WAIT)  # the loop thread, and the one closing it, end by themselves


# --- syncify / asyncify / from_thread ---------------------------------------------------------


async def scale(x: int, *, factor: int = 2) -> tuple[int, int]:
    """Scale *x*."""
    await anyio.lowlevel.checkpoint()
    return x * factor, threading.get_ident()


def scale_sync(x: int, *, factor: int = 2) -> tuple[int, int]:
    """Scale *x*, blocking."""
    return x * factor, threading.get_ident()


def test_syncify_and_asyncify_keep_the_signature() -> None:
    """Both adapters keep the name, docstring, signature and ``__wrapped__``."""
    sync_scale = concur.syncify(scale)
    async_scale = concur.asyncify(scale_sync)
    assert sync_scale.__name__ == "scale"
    assert sync_scale.__doc__ == "Scale *x*."
    assert inspect.signature(sync_scale) == inspect.signature(scale)
    assert sync_scale.__wrapped__ is scale  # type: ignore[attr-defined]
    assert async_scale.__name__ == "scale_sync"
    assert inspect.signature(async_scale) == inspect.signature(scale_sync)
    assert inspect.iscoroutinefunction(async_scale)
    with pytest.raises(TypeError, match="async already"):
        concur.asyncify(scale)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
def test_syncify_round_trip_from_sync_code(backend: str) -> None:
    """``syncify(asyncify(f))`` behaves as ``f``; keywords pass through both."""
    round_trip = concur.syncify(concur.asyncify(scale_sync))
    value, thread = round_trip(4, factor=3)
    assert value == 12
    assert thread != threading.get_ident()
    assert concur.syncify(scale)(5, factor=10)[0] == 50


async def test_asyncify_round_trip_on_the_loop() -> None:
    """``asyncify(syncify(g))`` awaited on a loop runs *g* on that very loop, via its thread."""
    here = threading.get_ident()
    value, thread = await concur.asyncify(concur.syncify(scale))(6, factor=7)
    assert (value, thread) == (42, here)
    value, thread = await concur.asyncify(scale_sync)(1, factor=5)
    assert value == 5
    assert thread != here


async def test_from_thread_runs_on_the_parent_loop() -> None:
    """From a worker thread, ``from_thread`` runs the function on the loop that started it."""
    here = threading.get_ident()
    assert await concur.to_thread(concur.from_thread, ident) == here
    assert await anyio.to_thread.run_sync(concur.from_thread, ident) == here
    with pytest.raises(ValueError, match="from a thread"):
        await concur.to_thread(concur.from_thread, fail, "from a thread")


async def test_from_thread_on_a_loop_thread_raises() -> None:
    """On an event loop's own thread, ``from_thread`` refuses: it would deadlock."""
    with pytest.raises(RuntimeError, match="deadlock"):
        concur.from_thread(ident)


def test_from_thread_outside_any_loop_raises() -> None:
    """In a thread no event loop started, ``from_thread`` refuses and points to Runner."""
    with pytest.raises(RuntimeError, match="Runner"):
        concur.from_thread(ident)
    with pytest.raises(RuntimeError, match="Runner"):
        in_thread(concur.from_thread, ident)


async def test_from_thread_is_cancelled_with_the_waiting_task() -> None:
    """Cancelling the task waiting for the thread cancels what ``from_thread`` runs."""
    started, cancelled = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    def in_worker() -> None:
        concur.from_thread(forever)

    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(concur.to_thread, in_worker))
        await anyio.to_thread.run_sync(started.wait, WAIT)
        tg.cancel_scope.cancel()
    assert cancelled.is_set()


# --- wait_future -------------------------------------------------------------------------------


async def test_wait_future_of_a_thread() -> None:
    """A ``concurrent.futures.Future`` set in another thread: value, or its very exception."""
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    setter = threading.Thread(target=future.set_result, args=(7,))
    setter.start()
    assert await concur.wait_future(future) == 7
    setter.join(WAIT)
    error = OSError("disk")
    failed: concurrent.futures.Future[int] = concurrent.futures.Future()
    failed.set_exception(error)
    with pytest.raises(OSError) as info:
        await concur.wait_future(failed)
    assert info.value is error


async def test_wait_future_of_a_thread_cancelled_by_someone_else() -> None:
    """A concurrent future cancelled elsewhere raises ``anyio.FutureCancelled``."""
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    canceller = threading.Thread(target=future.cancel)
    canceller.start()
    with pytest.raises(anyio.FutureCancelled):
        await concur.wait_future(future)
    canceller.join(WAIT)


async def test_cancelling_the_waiter_cancels_a_concurrent_future() -> None:
    """Cancelling the task in ``wait_future`` cancels the pending concurrent future."""
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    with anyio.move_on_after(0):
        await concur.wait_future(future)
    assert future.cancelled()


async def test_cancelling_the_waiter_cancels_a_runner_task() -> None:
    """``wait_future`` on a ``Runner.submit`` future: cancelling the waiter cancels that task."""
    started, cancelled = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    with concur.Runner("trio") as runner:
        assert await concur.wait_future(runner.submit(double, 5)) == 10
        future = runner.submit(forever)
        async with anyio.create_task_group() as tg:
            tg.start_soon(concur.wait_future, future)
            await anyio.to_thread.run_sync(started.wait, WAIT)
            tg.cancel_scope.cancel()
        await anyio.to_thread.run_sync(cancelled.wait, WAIT)
        assert future.cancelled()


@pytest.fixture
def other_loop() -> Iterator[concur.Runner]:
    """An asyncio loop on another thread (a Runner's)."""
    with concur.Runner("asyncio", name="other-loop") as runner:
        yield runner


async def _new_future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


async def test_wait_future_of_another_asyncio_loop(other_loop: concur.Runner) -> None:
    """An ``asyncio.Future`` of a loop in another thread: value, exception, cancellation."""
    future = other_loop.run(_new_future)
    loop = future.get_loop()
    loop.call_soon_threadsafe(future.set_result, "done")
    assert await concur.wait_future(future) == "done"

    error = LookupError("nope")
    failed = other_loop.run(_new_future)
    loop.call_soon_threadsafe(failed.set_exception, error)
    with pytest.raises(LookupError) as info:
        await concur.wait_future(failed)
    assert info.value is error

    cancelled_elsewhere = other_loop.run(_new_future)
    loop.call_soon_threadsafe(cancelled_elsewhere.cancel)
    with pytest.raises(anyio.FutureCancelled):
        await concur.wait_future(cancelled_elsewhere)


async def test_cancelling_the_waiter_cancels_an_asyncio_future(
    other_loop: concur.Runner,
) -> None:
    """Cancelling the task in ``wait_future`` cancels the other loop's future."""
    future = other_loop.run(_new_future)
    with anyio.move_on_after(0):
        await concur.wait_future(future)

    async def is_cancelled() -> bool:
        await anyio.lowlevel.checkpoint()
        return future.cancelled()

    assert other_loop.run(is_cancelled)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_wait_future_of_the_current_loop_is_simply_awaited() -> None:
    """An ``asyncio.Future`` of the running loop is awaited in place, cancellation mapped."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    loop.call_soon(future.set_result, 3)
    assert await concur.wait_future(future) == 3
    cancelled = loop.create_future()
    loop.call_soon(cancelled.cancel)
    with pytest.raises(anyio.FutureCancelled):
        await concur.wait_future(cancelled)
    pending = loop.create_future()
    with anyio.move_on_after(0):
        await concur.wait_future(pending)
    assert pending.cancelled()


async def test_wait_future_of_anyio() -> None:
    """An ``anyio.Future``: value, its own exception, and ``FutureCancelled``."""
    future: anyio.Future[int] = anyio.Future()
    future.return_value = 1
    assert await concur.wait_future(future) == 1
    failed: anyio.Future[int] = anyio.Future()
    failed.exception = KeyError("k")
    with pytest.raises(KeyError):
        await concur.wait_future(failed)
    cancelled: anyio.Future[int] = anyio.Future()
    cancelled.cancel()
    with pytest.raises(anyio.FutureCancelled):
        await concur.wait_future(cancelled)
    with pytest.raises(TypeError, match="wait_future"):
        await concur.wait_future(42)  # type: ignore[arg-type]


# --- sync functions are refused before they run (issue 9, item 6) ------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_sync_function_is_refused_before_it_runs(backend: str) -> None:
    """run, Runner.run/submit and syncify refuse a sync function without calling it."""
    calls: list[int] = []

    def sync_fn() -> int:
        calls.append(1)
        return 1

    with pytest.raises(TypeError, match=r"concur.run\(\) takes an async function; .*sync_fn"):
        concur.run(sync_fn, backend=backend)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="len is not an async function"):
        concur.syncify(len)  # type: ignore[arg-type]
    with concur.Runner(backend) as runner:  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"runner\.run"):
            runner.run(sync_fn)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"runner\.submit"):
            runner.submit(sync_fn)  # type: ignore[arg-type]
    assert calls == []


def test_a_sync_decorator_around_an_async_function_is_async() -> None:
    """A functools.wraps wrapper that returns the coroutine passes the check and runs."""

    def decorate(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any) -> Any:
            return fn(*args)

        return wrapper

    assert concur.run(decorate(double), 4) == 8


async def _fetch(url: str) -> str:
    await anyio.lowlevel.checkpoint()
    return url


def test_a_coroutine_object_is_refused_with_the_call_to_write() -> None:
    """Each entry point given a coroutine object says how to call it instead."""
    with concur.Runner() as runner:
        attempts: list[tuple[Any, str]] = [
            (concur.run, r"write concur\.run\(_fetch, \.\.\.\) instead"),
            (runner.run, r"write runner\.run\(_fetch, \.\.\.\) instead"),
            (runner.submit, r"write runner\.submit\(_fetch, \.\.\.\) instead"),
            (lambda c: runner.map(c, ["u"]), r"write runner\.map\(_fetch, items\) instead"),
            (concur.syncify, r"write concur\.syncify\(_fetch\) instead"),
            (concur.from_thread, r"write concur\.from_thread\(_fetch, \.\.\.\) instead"),
        ]
        for attempt, message in attempts:
            with pytest.raises(TypeError, match=message):
                attempt(_fetch("u"))
        with pytest.raises(TypeError, match=r"runner\.run\(\) takes a callable, got int"):
            runner.run(3)  # type: ignore[call-overload,arg-type]
