"""concur.run, concur.Runner, syncify/asyncify, from_thread and wait_future."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import pytest

import concur

WAIT = 20.0  # a bound for threading waits, never reached when the tests pass
BACKENDS = ["asyncio", "trio"]
# worker-thread caches of anyio and trio; the conftest checks that none is busy
_IDLE_WORKERS = ("AnyIO worker thread", "Trio thread", "Trio worker thread")

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def _new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [
        thread
        for thread in threading.enumerate()
        if thread not in before and thread.is_alive() and not thread.name.startswith(_IDLE_WORKERS)
    ]


@pytest.fixture(autouse=True)
def _no_loop_thread_left() -> Iterator[None]:
    """After each test, no thread it started (an event loop's above all) is still alive."""
    before = set(threading.enumerate())
    yield
    left = _new_threads(before)
    for thread in left:  # helper threads of the test itself may be finishing
        thread.join(WAIT)
    left = _new_threads(before)
    assert not left, f"threads left running: {left}"


async def ident() -> int:
    await anyio.lowlevel.checkpoint()
    return threading.get_ident()


async def double(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * x


async def fail(message: str) -> None:
    await anyio.lowlevel.checkpoint()
    raise ValueError(message)


async def context_seen(_: object = None) -> tuple[str, float | None, str]:
    """The context variable, and the ambient timeout and handoff policy, seen here."""
    await anyio.lowlevel.checkpoint()
    settings = concur.scope().settings
    return request_id.get(), settings.timeout, settings.handoff


def in_thread(fn: Any, *args: Any) -> Any:
    """Run ``fn(*args)`` in a fresh plain thread and return its result (or raise)."""
    box: list[Any] = []

    def target() -> None:
        try:
            box.append((True, fn(*args)))
        except BaseException as exc:
            box.append((False, exc))

    thread = threading.Thread(target=target, name="test-helper")
    thread.start()
    thread.join(WAIT)
    ok, value = box[0]
    if not ok:
        raise value
    return value


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
    assert _new_threads(before) == []


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


# --- Runner -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_runner_keeps_one_named_loop_thread_started_on_first_use(backend: str) -> None:
    """The loop thread starts on first use, serves every call, is named, and is gone at close."""
    before = set(threading.enumerate())
    runner = concur.Runner(backend, name="my-loop")  # type: ignore[arg-type]
    assert _new_threads(before) == []
    names = {runner.run(_thread_name) for _ in range(3)}
    assert names == {"my-loop"}
    assert len({runner.run(ident) for _ in range(5)}) == 1
    assert [thread.name for thread in _new_threads(before)] == ["my-loop"]
    runner.close()
    assert _new_threads(before) == []
    assert runner.closed


async def _thread_name() -> str:
    await anyio.lowlevel.checkpoint()
    return threading.current_thread().name


@pytest.mark.parametrize("backend", BACKENDS)
def test_runner_serves_eight_threads_at_once(backend: str) -> None:
    """Eight threads calling ``run``, ``submit`` and ``map`` at once share the one loop."""
    barrier = threading.Barrier(8)

    def client(runner: concur.Runner, n: int) -> tuple[set[int], list[int]]:
        barrier.wait(WAIT)
        idents = {runner.run(ident) for _ in range(10)}
        futures = [runner.submit(double, n * 100 + i) for i in range(10)]
        values = [future.result(WAIT) for future in futures]
        assert runner.map(double, range(n)) == [2 * i for i in range(n)]
        return idents, values

    with (
        concur.Runner(backend) as runner,  # type: ignore[arg-type]
        concurrent.futures.ThreadPoolExecutor(8) as pool,
    ):
        results = list(pool.map(client, [runner] * 8, range(8)))
    assert len(set().union(*(idents for idents, _ in results))) == 1
    for n, (_, values) in enumerate(results):
        assert values == [2 * (n * 100 + i) for i in range(10)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_runner_run_returns_and_raises_like_the_function(backend: str) -> None:
    """``run`` returns the value and raises the very exception of the function."""
    error = KeyError("gone")

    async def raise_it() -> None:
        raise error

    with concur.Runner(backend) as runner:  # type: ignore[arg-type]
        assert runner.run(double, 5) == 10
        with pytest.raises(KeyError) as info:
            runner.run(raise_it)
        assert info.value is error
        with pytest.raises(TypeError, match="not an async function"):
            runner.run(lambda: 3)  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize("backend", BACKENDS)
def test_submit_and_cancel_cancels_the_task_on_the_loop(backend: str) -> None:
    """``future.cancel()`` cancels the running task, whose cleanup then runs on the loop."""
    started, cleaned = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cleaned.set()
            raise

    with concur.Runner(backend) as runner:  # type: ignore[arg-type]
        future = runner.submit(forever)
        assert started.wait(WAIT)
        assert not future.done()
        assert future.cancel()
        assert cleaned.wait(WAIT)
        assert future.cancelled()
        assert runner.submit(double, 2).result(WAIT) == 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_submit_cancelled_before_it_starts_never_runs(backend: str) -> None:
    """A future cancelled before its task started: the function never runs."""
    blocking, release, ran = threading.Event(), threading.Event(), threading.Event()

    async def block_the_loop() -> None:
        blocking.set()
        release.wait(WAIT)  # deliberately blocks the loop: no task can start meanwhile

    async def work() -> None:
        ran.set()

    with concur.Runner(backend) as runner:  # type: ignore[arg-type]
        blocker = runner.submit(block_the_loop)
        assert blocking.wait(WAIT)
        futures = [runner.submit(work) for _ in range(5)]
        assert all(future.cancel() for future in futures)
        release.set()
        blocker.result(WAIT)
    assert all(future.cancelled() for future in futures)
    assert not ran.is_set()


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_and_map_on_the_runners_own_thread_raise(backend: str) -> None:
    """On the runner's loop thread ``run``/``map``/``close`` raise; ``submit`` works there."""
    with concur.Runner(backend) as runner:  # type: ignore[arg-type]

        async def inside() -> int:
            with pytest.raises(RuntimeError, match="deadlock"):
                runner.run(double, 1)
            with pytest.raises(RuntimeError, match="deadlock"):
                runner.map(double, [1])
            with pytest.raises(RuntimeError, match="deadlock"):
                runner.close()
            return await concur.wait_future(runner.submit(double, 21))

        assert runner.run(inside) == 42


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_closed_runner_refuses_calls(backend: str) -> None:
    """After ``close`` (idempotent), every call and ``with`` raises ``RuntimeError``."""
    runner = concur.Runner(backend)  # type: ignore[arg-type]
    runner.run(double, 1)
    runner.close()
    runner.close()
    for attempt in (
        lambda: runner.run(double, 1),
        lambda: runner.submit(double, 1),
        lambda: runner.map(double, [1]),
        lambda: runner.__enter__(),
    ):
        with pytest.raises(RuntimeError, match="closed"):
            attempt()
    never_started = concur.Runner(backend)  # type: ignore[arg-type]
    never_started.close()
    with pytest.raises(RuntimeError, match="closed"):
        never_started.run(double, 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_close_waits_for_submitted_work(backend: str) -> None:
    """Without a shutdown timeout, closing lets submitted work finish."""
    started, release = threading.Event(), threading.Event()

    async def slow() -> str:
        started.set()
        await anyio.to_thread.run_sync(release.wait, WAIT)
        return "finished"

    runner = concur.Runner(backend)  # type: ignore[arg-type]
    future = runner.submit(slow)
    assert started.wait(WAIT)

    def release_once_closing() -> None:
        while not runner.closed:
            threading.Event().wait(0.01)
        release.set()

    helper = threading.Thread(target=release_once_closing)
    helper.start()
    runner.close()
    helper.join(WAIT)
    assert future.result(0) == "finished"


@pytest.mark.parametrize("backend", BACKENDS)
def test_shutdown_timeout_cancels_what_is_left(backend: str) -> None:
    """With ``shutdown_timeout``, closing cancels what still runs and awaits its cleanup."""
    started, cleaned = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.lowlevel.checkpoint()
            cleaned.set()

    runner = concur.Runner(backend, shutdown_timeout=0.01)  # type: ignore[arg-type]
    future = runner.submit(forever)
    assert started.wait(WAIT)
    runner.close()
    assert cleaned.is_set()
    assert future.cancelled()


def test_runner_validates_its_options() -> None:
    """A bad backend or shutdown timeout is refused at construction."""
    with pytest.raises(ValueError, match="backend"):
        concur.Runner("curio")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shutdown_timeout"):
        concur.Runner(shutdown_timeout=-1)
    with pytest.raises(ValueError, match="limit"), concur.Runner() as runner:
        runner.map(double, [1], limit=0)
    runner = concur.Runner("trio", name="x")
    assert (runner.backend, runner.name) == ("trio", "x")
    assert "x" in repr(runner)
    runner.close()


def test_a_loop_that_cannot_start_raises_at_the_call() -> None:
    """Bad backend options fail the first call, leave no thread, and the runner can close."""
    runner = concur.Runner("trio", backend_options={"no_such_option": 1})
    with pytest.raises(TypeError, match="no_such_option"):
        runner.run(double, 1)
    runner.close()
    assert runner.closed


# --- Runner.map ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_map_keeps_order_and_the_limit_for_async_and_sync(backend: str) -> None:
    """``map`` returns results in input order, runs at most *limit* at once, async or sync."""
    running = 0
    peak = 0
    lock = threading.Lock()

    def track(delta: int) -> None:
        nonlocal running, peak
        with lock:
            running += delta
            peak = max(peak, running)

    async def slow_double(x: int) -> int:
        track(1)
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        track(-1)
        return 2 * x

    def sync_square(x: int) -> tuple[int, int]:
        return x * x, threading.get_ident()

    with concur.Runner(backend) as runner:  # type: ignore[arg-type]
        assert runner.map(slow_double, range(30), limit=3) == [2 * i for i in range(30)]
        assert peak <= 3
        results = runner.map(sync_square, range(10))
        loop_ident = runner.run(ident)
    assert [square for square, _ in results] == [i * i for i in range(10)]
    assert all(thread != loop_ident for _, thread in results)


@pytest.mark.parametrize("backend", BACKENDS)
def test_map_fails_fast_with_the_bare_exception(backend: str) -> None:
    """One failing call cancels the others and its exception is raised bare."""
    cancelled = threading.Event()

    async def job(x: int) -> int:
        if x == 0:
            await anyio.lowlevel.checkpoint()
            raise ValueError("zero")
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        return x

    with (
        concur.Runner(backend) as runner,  # type: ignore[arg-type]
        pytest.raises(ValueError, match="zero"),
    ):
        runner.map(job, [1, 0, 2], limit=3)
    assert cancelled.is_set()


@pytest.mark.parametrize("backend", BACKENDS)
def test_map_raises_a_group_when_several_fail_on_their_own(backend: str) -> None:
    """Two calls failing on their own give an ``ExceptionGroup`` of both."""
    barrier = threading.Barrier(2)

    def job(x: int) -> None:
        barrier.wait(WAIT)
        raise ValueError(str(x))

    with concur.Runner(backend) as runner:  # type: ignore[arg-type]
        with pytest.RaisesGroup(ValueError, ValueError):
            runner.map(job, [1, 2], limit=2)
        assert runner.map(double, []) == []


# --- context -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_scope_settings_and_context_vars_reach_runner_calls(backend: str) -> None:
    """``run``/``submit``/``map`` run in a copy of the caller's context, scope settings included."""
    seen = context_seen

    async def set_var() -> None:
        request_id.set("changed inside")

    with concur.Runner(backend) as runner:  # type: ignore[arg-type]
        assert runner.run(seen) == ("-", None, "warn")
        token = request_id.set("r-1")
        try:
            with concur.scope(timeout=7, handoff="strict"):
                expected = ("r-1", 7, "strict")
                assert runner.run(seen) == expected
                assert runner.submit(seen).result(WAIT) == expected
                assert runner.map(seen, [1, 2]) == [expected, expected]
                assert in_thread(concur.run, seen) == ("-", None, "warn")
                runner.run(set_var)
                assert request_id.get() == "r-1"
        finally:
            request_id.reset(token)
        assert runner.run(seen) == ("-", None, "warn")


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


# --- Ctrl-C ------------------------------------------------------------------------------------


def _interrupt_when(event: threading.Event) -> threading.Thread:
    """Send a real SIGINT to the main thread once *event* is set."""
    import signal

    def target() -> None:
        if event.wait(WAIT):
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    thread = threading.Thread(target=target, name="test-interrupter")
    thread.start()
    return thread


def _cleanup_task(started: threading.Event, cleaned: threading.Event, cancelled: list[bool]) -> Any:
    async def work() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.lowlevel.checkpoint()
            cleaned.set()

    return work


def _ignore_arg(fn: Any) -> Any:
    async def one(_: object) -> None:
        await fn()

    return one


@pytest.fixture
def main_thread_only() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")


@pytest.mark.usefixtures("main_thread_only")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["run", "map"])
def test_ctrl_c_in_runner_cancels_the_task_then_raises(backend: str, method: str) -> None:
    """A real SIGINT during ``Runner.run``/``map`` cancels the task, awaits cleanup, raises."""
    started, cleaned = threading.Event(), threading.Event()
    cancelled: list[bool] = []
    work = _cleanup_task(started, cleaned, cancelled)
    with concur.Runner(backend) as runner:  # type: ignore[arg-type]
        interrupter = _interrupt_when(started)
        call = (
            (lambda: runner.run(work))
            if method == "run"
            else lambda: runner.map(_ignore_arg(work), [1])
        )
        with pytest.raises(KeyboardInterrupt):
            call()
        interrupter.join(WAIT)
        assert cleaned.is_set()
        assert cancelled == [True]
        assert runner.run(double, 3) == 6  # still usable


@pytest.mark.usefixtures("main_thread_only")
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_second_ctrl_c_stops_waiting_for_the_cleanup(backend: str) -> None:
    """A second SIGINT during the cleanup raises at once; the cleanup goes on, the runner works."""
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

    with concur.Runner(backend) as runner:  # type: ignore[arg-type]
        first, second = _interrupt_when(started), _interrupt_when(cleaning)
        with pytest.raises(KeyboardInterrupt):
            runner.run(work)
        first.join(WAIT)
        second.join(WAIT)
        assert not cleaned.is_set()
        release.set()
        assert cleaned.wait(WAIT)
        assert runner.run(double, 4) == 8


@pytest.mark.usefixtures("main_thread_only")
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_in_concur_run_without_a_loop(backend: str) -> None:
    """A real SIGINT during ``concur.run`` (no loop in the thread) runs the cleanup and raises."""
    started, cleaned = threading.Event(), threading.Event()
    work = _cleanup_task(started, cleaned, [])
    interrupter = _interrupt_when(started)
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
    work = _cleanup_task(started, cleaned, cancelled)

    async def cell() -> None:  # sync code on a running loop, as in a notebook cell
        concur.run(work, backend=backend)  # type: ignore[arg-type]

    loop = asyncio.new_event_loop()  # no SIGINT handler of its own, like a kernel's loop
    try:
        interrupter = _interrupt_when(started)
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
        first, second = _interrupt_when(started), _interrupt_when(cleaning)
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


# --- interpreter exit ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_runner_never_closed_is_closed_at_exit(backend: str) -> None:
    """A runner left open is closed at interpreter exit, its work cancelled and cleaned up."""
    script = textwrap.dedent(f"""
        import anyio, concur

        async def forever():
            try:
                await anyio.sleep_forever()
            finally:
                print("cleaned up", flush=True)

        runner = concur.Runner({backend!r}, shutdown_timeout=0)
        print(runner.run(anyio.sleep, 0))
        runner.submit(forever)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["None", "cleaned", "up"]
    assert out.stderr == ""


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
