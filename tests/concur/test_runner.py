"""concur.Runner: one event loop in a thread of its own, for sync code to call into."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import subprocess
import sys
import textwrap
import threading
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from concur_helpers import (
    BACKENDS,
    WAIT,
    SyncJobPeak,
    cleanup_task,
    context_seen,
    double,
    ident,
    in_thread,
    interrupt_when,
    main_thread_only,  # noqa: F401  (a fixture)
    new_threads,
    no_loop_thread_left,  # noqa: F401  (an autouse fixture)
    request_id,
)

import concur
from concur import _runner as concur_runner

# --- Runner -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_runner_keeps_one_named_loop_thread_started_on_first_use(backend: str) -> None:
    """The loop thread starts on first use, serves every call, is named, and is gone at close."""
    before = set(threading.enumerate())
    runner = concur.Runner(backend, name="my-loop")  # type: ignore[arg-type]
    assert new_threads(before) == []
    names = {runner.run(_thread_name) for _ in range(3)}
    assert names == {"my-loop"}
    assert len({runner.run(ident) for _ in range(5)}) == 1
    assert [thread.name for thread in new_threads(before)] == ["my-loop"]
    runner.close()
    assert new_threads(before) == []
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


# --- a thread limit set on a loop (review) ------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_thread_limit_set_on_a_loop_caps_runner_calls(backend: str) -> None:
    """A ``scope(thread_limit=...)`` entered on a loop caps thread calls on a runner's loop."""
    peak = SyncJobPeak()
    with concur.scope(thread_limit=1), concur.Runner(backend) as runner:  # type: ignore[arg-type]
        assert runner.map(peak.job, range(3), limit=3) == [0, 1, 2]
    assert peak.peak == 1


# --- Runner.map ---------------------------------------------------------------------------------


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


# --- context ------------------------------------------------------------------------------------


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


# --- Ctrl-C -------------------------------------------------------------------------------------


def _ignore_arg(fn: Any) -> Any:
    async def one(_: object) -> None:
        await fn()

    return one


@pytest.mark.usefixtures("main_thread_only")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["run", "map"])
def test_ctrl_c_in_runner_cancels_the_task_then_raises(backend: str, method: str) -> None:
    """A real SIGINT during ``Runner.run``/``map`` cancels the task, awaits cleanup, raises."""
    started, cleaned = threading.Event(), threading.Event()
    cancelled: list[bool] = []
    work = cleanup_task(started, cleaned, cancelled)
    with concur.Runner(backend) as runner:  # type: ignore[arg-type]
        interrupter = interrupt_when(started)
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
        first, second = interrupt_when(started), interrupt_when(cleaning)
        with pytest.raises(KeyboardInterrupt):
            runner.run(work)
        first.join(WAIT)
        second.join(WAIT)
        assert not cleaned.is_set()
        release.set()
        assert cleaned.wait(WAIT)
        assert runner.run(double, 4) == 8


_STARTUP_SCRIPT = textwrap.dedent("""
    import asyncio, signal, threading, anyio, concur

    backend = {backend!r}
    delivered = threading.Event()
    starting = threading.Event()

    def on_sigint(signum, frame):
        delivered.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)

    def hold_the_start():
        starting.set()
        delivered.wait(20)  # the loop starts only once the Ctrl-C was delivered

    if backend == "asyncio":
        def factory():
            hold_the_start()
            return asyncio.new_event_loop()
        options = {{"loop_factory": factory}}
    else:
        import time, trio

        class Clock(trio.abc.Clock):
            def start_clock(self):
                hold_the_start()
            def current_time(self):
                return time.monotonic()
            def deadline_to_sleep_time(self, deadline):
                return deadline - time.monotonic()

        options = {{"clock": Clock()}}

    def interrupt():
        starting.wait(20)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    async def one():
        return 1

    runner = concur.Runner(backend, backend_options=options, name="loop")
    interrupter = threading.Thread(target=interrupt)
    interrupter.start()
    try:
        runner.run(one)
    except KeyboardInterrupt:
        print("interrupted")
    interrupter.join()
    print(runner.run(one))
    runner.close()
    print([t.name for t in threading.enumerate()])
""")


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_while_the_loop_starts_raises_and_leaves_a_usable_runner(backend: str) -> None:
    """A real SIGINT while the runner's loop starts raises; the runner then works and closes."""
    script = _STARTUP_SCRIPT.format(backend=backend)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.stdout.split("\n")[:3] == ["interrupted", "1", "['MainThread']"], out.stderr


def _interrupt_once_closing(runner: concur.Runner) -> threading.Thread:
    """Send a real SIGINT to the main thread once *runner* is closing."""

    def target() -> None:
        while not runner.closed:
            threading.Event().wait(0.01)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    thread = threading.Thread(target=target, name="test-interrupter")
    thread.start()
    return thread


@pytest.mark.usefixtures("main_thread_only")
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_while_closing_cancels_the_work_and_ends_the_loop(backend: str) -> None:
    """A real SIGINT in ``close`` cancels what runs, awaits its cleanup, ends the loop, raises."""
    started, cleaned = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.lowlevel.checkpoint()
            cleaned.set()

    runner = concur.Runner(backend, name="closing-loop")  # type: ignore[arg-type]
    future = runner.submit(forever)
    try:
        assert started.wait(WAIT)
        interrupter = _interrupt_once_closing(runner)
        with pytest.raises(KeyboardInterrupt):
            runner.close()
        interrupter.join(WAIT)
        assert cleaned.is_set()
        assert future.cancelled()
        assert "closing-loop" not in [thread.name for thread in threading.enumerate()]
    finally:
        future.cancel()  # so that a failing run leaves no loop behind
        for thread in threading.enumerate():
            if thread.name == "closing-loop":
                thread.join(WAIT)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", BACKENDS)
def test_close_from_a_worker_thread_of_its_own_loop_raises(backend: str) -> None:
    """``close`` in a worker thread of the runner's loop raises: it would wait for itself."""

    async def close_from_a_thread() -> None:
        await concur.to_thread(runner.close)

    with concur.Runner(backend) as runner:  # type: ignore[arg-type]
        with pytest.raises(RuntimeError, match="deadlock"):
            runner.run(close_from_a_thread)
        assert not runner.closed
        assert runner.run(anyio.sleep, 0) is None


def test_a_call_handed_over_while_the_loop_closes_fails_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call whose hand-over lands as asyncio closes the loop raises ``RuntimeError``."""
    handing, closing, handed = threading.Event(), threading.Event(), threading.Event()
    call_soon = concur_runner.call_soon

    def late_call_soon(token: anyio.lowlevel.EventLoopToken, fn: Any) -> None:
        if threading.current_thread().name != "late-caller":
            call_soon(token, fn)
            return
        handing.set()
        assert closing.wait(WAIT)  # the loop has had its last turn and is being closed
        try:
            call_soon(token, fn)
        finally:
            handed.set()

    class SlowToClose(asyncio.SelectorEventLoop):
        def close(self) -> None:
            closing.set()
            handed.wait(WAIT)
            super().close()

    monkeypatch.setattr(concur_runner, "call_soon", late_call_soon)
    runner = concur.Runner(backend_options={"loop_factory": SlowToClose})
    runner.run(anyio.sleep, 0)
    outcome: list[BaseException | None] = []

    def late() -> None:
        try:
            runner.run(anyio.sleep, 0)
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    caller = threading.Thread(target=late, name="late-caller", daemon=True)
    caller.start()
    assert handing.wait(WAIT)
    runner.close()
    caller.join(WAIT)
    assert not caller.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], RuntimeError)
    assert "closed" in str(outcome[0])


# --- interpreter exit ---------------------------------------------------------------------------


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
