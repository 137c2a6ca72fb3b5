"""Review of concur.run and concur.Runner: limiters across loops, Ctrl-C at start and close."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import threading
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import concur
from concur import _runner as concur_runner

WAIT = 20.0  # a bound for threading waits, never reached when the tests pass
BACKENDS = ["asyncio", "trio"]


class _Peak:
    """How many sync jobs ran at once, at most."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def job(self, x: int) -> int:
        """The first job waits until every other call is blocked (on the limiter, or running)."""
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            if x == 0:
                concur.from_thread(anyio.wait_all_tasks_blocked)
            return x
        finally:
            with self.lock:
                self.running -= 1


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_thread_limit_set_on_a_loop_caps_runner_calls(backend: str) -> None:
    """A ``scope(thread_limit=...)`` entered on a loop caps thread calls on a runner's loop."""
    peak = _Peak()
    with concur.scope(thread_limit=1), concur.Runner(backend) as runner:  # type: ignore[arg-type]
        assert runner.map(peak.job, range(3), limit=3) == [0, 1, 2]
    assert peak.peak == 1


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_thread_limit_set_on_a_loop_caps_concur_run(backend: str) -> None:
    """A ``scope(thread_limit=...)`` entered on a loop caps thread calls in ``concur.run``."""
    peak = _Peak()

    async def three() -> list[int]:
        return await concur.map_async(peak.job, range(3), limit=3)

    with concur.scope(thread_limit=1):
        assert concur.run(three, backend=backend) == [0, 1, 2]  # type: ignore[arg-type]
    assert peak.peak == 1


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


@pytest.fixture
def main_thread_only() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")


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
