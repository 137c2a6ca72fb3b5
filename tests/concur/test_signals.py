"""run_until_signal and lifespan, on asyncio and trio.

Real signals: a service script (``signal_scripts/service.py``) runs as a subprocess and is
sent SIGINT/SIGTERM; the tests synchronise with it through the lines it prints. In-process
tests send this process ``SIGUSR1``, under a recording handler installed first (so a
signal that run_until_signal failed to catch is seen, not fatal).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import concur

# When a test fails, hypothesis's pytest plugin imports libcst to suggest a patch, and that
# import warns under warnings-as-errors, hiding the failing example: import it now.
with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401

SCRIPT = Path(__file__).parent / "signal_scripts" / "service.py"
LINE_WAIT = 30.0  # a bound on waiting for one line of the subprocess, not a sync


# --- a service in a subprocess --------------------------------------------------------------


class Service:
    """``service.py`` running in a subprocess; its stdout lines are read by a thread."""

    def __init__(self, backend: str, scenario: str, grace: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), backend, scenario, str(grace)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="service-reader")
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, prefix: str) -> str:
        """Return the first line starting with *prefix*, waiting for it if need be."""
        for line in self.lines:
            if line.startswith(prefix):
                return line
        while True:
            try:
                line = self._queue.get(timeout=LINE_WAIT)
            except queue.Empty:
                pytest.fail(f"no line {prefix!r} within {LINE_WAIT} s; got {self.lines}")
            if line is None:
                self.proc.wait()
                pytest.fail(f"the service ended before {prefix!r}: {self.lines}{self.stderr()}")
            self.lines.append(line)
            if line.startswith(prefix):
                return line

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def write(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def finish(self) -> int:
        """Wait for the service to exit; return its exit code (all its lines are read)."""
        returncode = self.proc.wait(timeout=LINE_WAIT)
        self._reader.join()
        while (line := self._queue.get()) is not None:
            self.lines.append(line)
        return returncode

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def service() -> Iterator[Any]:
    started: list[Service] = []

    def start(backend: str, scenario: str, grace: float = 60.0) -> Service:
        started.append(Service(backend, scenario, grace))
        return started[-1]

    yield start
    for one in started:
        one.close()


BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])


@BACKENDS
@pytest.mark.parametrize(
    ("sig", "kind"), [(signal.SIGINT, "async"), (signal.SIGTERM, "sync")], ids=["INT", "TERM"]
)
def test_a_real_signal_ends_the_service_with_its_teardown_done(
    service: Any, backend: str, sig: signal.Signals, kind: str
) -> None:
    """A real SIGINT or SIGTERM ends ``concur.run(run_until_signal, ...)``: the lifespan
    teardown runs, the signal is returned, the handlers are restored, the exit code is 0."""
    svc = service(backend, kind)
    assert svc.expect("setup gave") == "setup gave resource"
    svc.expect("ready")
    svc.send(sig)
    assert svc.finish() == 0, svc.stderr()
    assert svc.lines[-3:] == ["teardown done", f"result {sig.name}", "restored True"]
    if kind == "sync":
        assert "setup in a worker thread True" in svc.lines
        assert "teardown in a worker thread True" in svc.lines


@BACKENDS
def test_a_second_signal_cuts_a_long_teardown_short(service: Any, backend: str) -> None:
    """A second signal cancels a lifespan teardown at once; cleanup under a bare shield is
    still waited for; the first signal is returned and the exit code is 0."""
    svc = service(backend, "stuck", grace=60.0)
    svc.expect("ready")
    svc.send(signal.SIGINT)
    svc.expect("teardown started")
    svc.expect("cleanup started")
    svc.send(signal.SIGTERM)
    svc.expect("teardown cancelled")
    assert svc.proc.poll() is None  # the shielded cleanup still waits for its line
    svc.write("go\n")
    assert svc.finish() == 0
    assert svc.lines[-3:] == ["cleanup done", "result SIGINT", "restored True"]
    assert "was cancelled by run_until_signal: a second signal (SIGTERM) arrived" in svc.stderr()


@BACKENDS
def test_grace_expiry_cuts_a_long_teardown_short(service: Any, backend: str) -> None:
    """Once ``grace`` has passed since the first signal, a lifespan teardown is cancelled;
    cleanup under a bare shield is still waited for."""
    grace = 0.5
    svc = service(backend, "stuck", grace=grace)
    svc.expect("ready")
    sent = time.monotonic()  # CLOCK_MONOTONIC: the same clock in both processes
    svc.send(signal.SIGTERM)
    cancelled_at = float(svc.expect("teardown cancelled").split()[-1])
    assert cancelled_at - sent >= grace
    svc.expect("cleanup started")
    assert svc.proc.poll() is None
    svc.write("go\n")
    assert svc.finish() == 0
    assert svc.lines[-3:] == ["cleanup done", "result SIGTERM", "restored True"]
    assert "its grace of 0.5 seconds expired" in svc.stderr()


# --- run_until_signal in this process ---------------------------------------------------------


class Recorder:
    """A Python-level handler that records the signals it gets."""

    def __init__(self) -> None:
        self.got: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.got.append(signum)


@pytest.fixture
def usr1() -> Iterator[Recorder]:
    """SIGUSR1 handled by a recorder during the test (never fatal), then as before."""
    recorder = Recorder()
    before = signal.signal(signal.SIGUSR1, recorder)
    yield recorder
    signal.signal(signal.SIGUSR1, before)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGUSR1)


async def test_returns_the_first_signal_as_a_signals_member(usr1: Recorder) -> None:
    """The first signal cancels fn and is returned as a ``signal.Signals`` member; the
    handler in place before is back afterwards and never saw the signal."""
    seen: list[object] = []

    async def fn() -> None:
        seen.append(signal.getsignal(signal.SIGUSR1))
        kill_self()
        try:
            await anyio.sleep_forever()
        finally:
            seen.append("cleaned up")

    result = await concur.run_until_signal(fn, signals=[signal.SIGUSR1])
    assert result is signal.Signals.SIGUSR1
    assert seen[0] is not usr1  # installed before fn started
    assert seen[1] == "cleaned up"
    assert signal.getsignal(signal.SIGUSR1) is usr1
    assert usr1.got == []


async def test_returns_none_when_fn_returns(usr1: Recorder) -> None:
    """When fn returns first, run_until_signal returns None (fn's value is dropped) and
    restores the handlers, SIGINT and SIGTERM by default."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    got: list[object] = []

    async def fn(a: int, b: str) -> int:
        got.extend((a, b, signal.getsignal(signal.SIGTERM)))
        return 42

    assert await concur.run_until_signal(fn, 1, "x") is None
    assert got[:2] == [1, "x"]
    assert got[2] is not before[signal.SIGTERM]
    assert before == {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


async def test_fn_exception_propagates_as_it_is(usr1: Recorder) -> None:
    """fn's own exception propagates unwrapped, the same object with its cause; the
    handlers are restored."""
    cause = KeyError("k")
    error = ValueError("boom")

    async def fn() -> None:
        await anyio.lowlevel.checkpoint()
        raise error from cause

    with pytest.raises(ValueError, match="boom") as info:
        await concur.run_until_signal(fn, signals=(signal.SIGUSR1,))
    assert info.value is error
    assert info.value.__cause__ is cause
    assert signal.getsignal(signal.SIGUSR1) is usr1


async def test_an_error_in_cleanup_after_a_signal_propagates(usr1: Recorder) -> None:
    """An exception fn raises while cleaning up after the signal propagates as it is."""

    async def fn() -> None:
        kill_self()
        try:
            await anyio.sleep_forever()
        finally:
            raise RuntimeError("cleanup failed")

    with pytest.raises(RuntimeError, match="cleanup failed"):
        await concur.run_until_signal(fn, signals=(signal.SIGUSR1,))
    assert signal.getsignal(signal.SIGUSR1) is usr1


async def test_zero_grace_cuts_lifespan_teardown_but_waits_for_a_bare_shield(
    usr1: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``grace=0`` a lifespan teardown is cancelled as soon as it starts (logged as a
    warning), while cleanup under a bare shield runs to its end."""
    steps: list[str] = []

    async def teardown() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            steps.append("teardown cancelled")

    async def fn() -> None:
        async with concur.lifespan(anyio.lowlevel.checkpoint, teardown, teardown_timeout=math.inf):
            try:
                kill_self()
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    for _ in range(5):
                        await anyio.sleep(0)
                    steps.append("shielded cleanup done")

    with caplog.at_level(logging.WARNING, logger="concur"):
        assert await concur.run_until_signal(fn, signals=[signal.SIGUSR1], grace=0) == (
            signal.SIGUSR1
        )
    assert steps == ["shielded cleanup done", "teardown cancelled"]
    assert "its grace of 0 seconds expired" in caplog.text


async def test_lifespan_teardown_gets_the_grace(usr1: Recorder) -> None:
    """Within the grace, a lifespan teardown runs to its end although fn was cancelled."""
    steps: list[str] = []

    async def teardown() -> None:
        for _ in range(5):
            await anyio.sleep(0)
        steps.append("teardown done")

    async def fn() -> None:
        async with concur.lifespan(anyio.lowlevel.checkpoint, teardown):
            kill_self()
            await anyio.sleep_forever()

    assert await concur.run_until_signal(fn, signals=[signal.SIGUSR1]) is signal.SIGUSR1
    assert steps == ["teardown done"]


async def test_cancelling_the_caller_cancels_fn_and_restores_handlers(usr1: Recorder) -> None:
    """An outside cancellation cancels fn, waits for its cleanup, restores the handlers
    and propagates."""
    steps: list[str] = []

    async def teardown() -> None:
        await anyio.sleep(0)
        steps.append("teardown done")

    async def fn(task_status: list[anyio.Event]) -> None:
        async with concur.lifespan(anyio.lowlevel.checkpoint, teardown):
            task_status[0].set()
            await anyio.sleep_forever()

    started = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: concur.run_until_signal(fn, [started], signals=[signal.SIGUSR1]))
        await started.wait()
        tg.cancel_scope.cancel()
    assert tg.cancel_scope.cancelled_caught
    assert steps == ["teardown done"]
    assert signal.getsignal(signal.SIGUSR1) is usr1


async def test_signals_work_during_cleanup_after_the_callers_cancellation(
    usr1: Recorder,
) -> None:
    """After an outside cancellation, a signal still starts the grace that cuts a stuck
    lifespan teardown short; the cancellation propagates."""
    steps: list[str] = []

    async def teardown() -> None:
        kill_self()
        try:
            await anyio.sleep_forever()
        finally:
            steps.append("teardown cancelled")

    async def fn(started: anyio.Event) -> None:
        async with concur.lifespan(anyio.lowlevel.checkpoint, teardown, teardown_timeout=math.inf):
            started.set()
            await anyio.sleep_forever()

    started = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: concur.run_until_signal(fn, started, signals=[signal.SIGUSR1], grace=0)
        )
        await started.wait()
        tg.cancel_scope.cancel()
    assert tg.cancel_scope.cancelled_caught
    assert steps == ["teardown cancelled"]
    assert usr1.got == []


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_refused_outside_the_main_thread(backend: str) -> None:
    """In a thread other than the main one, run_until_signal raises RuntimeError saying
    so, and fn never runs."""
    ran: list[bool] = []
    raised: list[BaseException] = []

    async def fn() -> None:
        ran.append(True)

    def in_thread() -> None:
        try:
            anyio.run(concur.run_until_signal, fn, backend=backend)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert len(raised) == 1
    assert isinstance(raised[0], RuntimeError)
    assert "main thread" in str(raised[0])
    assert not ran


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_refused_in_a_runner(backend: str) -> None:
    """A ``concur.Runner`` runs its loop in its own thread: run_until_signal refuses."""

    async def fn() -> None:
        pass

    with (
        concur.Runner(backend) as runner,  # type: ignore[arg-type]
        pytest.raises(RuntimeError, match="main thread"),
    ):
        runner.run(concur.run_until_signal, fn)


async def test_refused_in_concur_run_called_from_a_running_loop(anyio_backend: str) -> None:
    """``concur.run`` called where a loop runs (as in a notebook) runs its loop on a
    background thread: run_until_signal refuses there, naming the main thread."""
    ran: list[bool] = []

    async def fn() -> None:
        ran.append(True)

    with pytest.raises(RuntimeError, match="must run in the main thread"):
        concur.run(concur.run_until_signal, fn, backend=anyio_backend)  # type: ignore[arg-type]
    assert not ran


async def test_a_nested_run_until_signal_is_refused(usr1: Recorder) -> None:
    """Only one run_until_signal handles signals at a time."""

    async def inner() -> None:
        pass

    async def outer() -> None:
        await concur.run_until_signal(inner, signals=[signal.SIGUSR1])

    with pytest.raises(RuntimeError, match="already running"):
        await concur.run_until_signal(outer, signals=[signal.SIGUSR1])
    assert signal.getsignal(signal.SIGUSR1) is usr1


async def _nothing() -> None:
    pass


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"signals": ()}, ValueError, "at least one"),
        ({"signals": [signal.SIGKILL]}, ValueError, "SIGKILL cannot be caught"),
        ({"signals": [12345]}, ValueError, "not a signal number"),
        ({"signals": ["SIGINT"]}, TypeError, "signal numbers"),
        ({"signals": [True]}, TypeError, "signal numbers"),
        ({"signals": signal.SIGINT}, TypeError, "iterable"),
        ({"grace": -1}, ValueError, "grace"),
        ({"grace": "1"}, TypeError, "grace"),
    ],
)
async def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    """Bad signals or grace raise a clear error before any handler is installed."""
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(error, match=match):
        await concur.run_until_signal(_nothing, **kwargs)
    assert signal.getsignal(signal.SIGINT) is before


async def test_fn_must_be_an_async_function() -> None:
    """A coroutine object (closed, never warned about) or a sync function is a TypeError."""
    with pytest.raises(TypeError, match="coroutine object"):
        await concur.run_until_signal(_nothing())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await concur.run_until_signal(lambda: None)  # type: ignore[arg-type,return-value]


# --- lifespan -------------------------------------------------------------------------------


async def test_lifespan_gives_setup_value_and_runs_teardown() -> None:
    """``as`` gives what async setup returned; teardown runs after the body."""
    steps: list[str] = []

    async def setup() -> str:
        steps.append("setup")
        return "value"

    async def teardown() -> None:
        steps.append("teardown")

    async with concur.lifespan(setup, teardown) as value:
        steps.append(f"body {value}")
    assert steps == ["setup", "body value", "teardown"]


async def test_lifespan_runs_sync_setup_and_teardown_in_threads() -> None:
    """Sync setup and teardown run in worker threads through concur.to_thread."""
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def setup() -> int:
        threads.append(threading.get_ident())
        return 7

    def teardown() -> None:
        threads.append(threading.get_ident())

    async with concur.lifespan(setup, teardown) as value:
        assert value == 7
    assert len(threads) == 2
    assert loop_thread not in threads


async def test_lifespan_setup_failure_skips_teardown() -> None:
    """If setup raises, the body and teardown do not run and the error propagates."""
    steps: list[str] = []

    def setup() -> None:
        raise OSError("no database")

    with pytest.raises(OSError, match="no database"):
        async with concur.lifespan(setup, lambda: steps.append("teardown")):
            steps.append("body")
    assert steps == []


async def test_lifespan_body_exception_propagates_unchanged() -> None:
    """The body's exception propagates as the same object; teardown ran."""
    steps: list[str] = []
    error = LookupError("from the body")

    with pytest.raises(LookupError) as info:
        async with concur.lifespan(lambda: None, lambda: steps.append("teardown")):
            raise error
    assert info.value is error
    assert info.value.__context__ is None
    assert steps == ["teardown"]


async def test_lifespan_teardown_is_shielded_from_cancellation() -> None:
    """A cancelled body still gets a teardown that awaits; the cancellation propagates."""
    steps: list[str] = []

    async def teardown() -> None:
        await anyio.sleep(0.01)
        steps.append("teardown done")

    with anyio.CancelScope() as scope:
        async with concur.lifespan(anyio.lowlevel.checkpoint, teardown):
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert steps == ["teardown done"]


async def test_lifespan_teardown_timeout_raises_timeout_error() -> None:
    """A teardown still running at ``teardown_timeout`` is cancelled: TimeoutError."""
    start = anyio.current_time()
    with pytest.raises(TimeoutError, match=r"teardown_timeout=0\.05"):
        async with concur.lifespan(lambda: None, anyio.sleep_forever, teardown_timeout=0.05):
            pass
    assert anyio.current_time() - start >= 0.05


async def test_lifespan_teardown_timeout_is_logged_when_the_body_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """If the body raised, its error propagates and the teardown timeout is logged."""
    with caplog.at_level(logging.ERROR, logger="concur"), pytest.raises(ValueError, match="b"):
        async with concur.lifespan(lambda: None, anyio.sleep_forever, teardown_timeout=0.05):
            raise ValueError("b")
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "teardown_timeout=0.05" in caplog.text
    assert "ValueError('b')" in caplog.text


async def test_lifespan_sync_teardown_stops_at_check_cancelled() -> None:
    """A sync teardown past its timeout stops where it calls check_cancelled."""
    calls: list[int] = []

    def teardown() -> None:
        while True:
            calls.append(1)
            concur.check_cancelled()
            time.sleep(0.005)

    with pytest.raises(TimeoutError):
        async with concur.lifespan(lambda: None, teardown, teardown_timeout=0.05):
            pass
    assert calls


async def test_lifespan_teardown_error(caplog: pytest.LogCaptureFixture) -> None:
    """A failing teardown's exception propagates as it is; when the body raised too, the
    body's propagates and the teardown's is logged with its traceback."""
    error = OSError("close failed")

    def teardown() -> None:
        raise error

    with pytest.raises(OSError, match="close failed") as info:
        async with concur.lifespan(lambda: None, teardown):
            pass
    assert info.value is error
    with caplog.at_level(logging.ERROR, logger="concur"), pytest.raises(KeyError):
        async with concur.lifespan(lambda: None, teardown):
            raise KeyError("body")
    assert len(caplog.records) == 1
    assert caplog.records[0].exc_info is not None
    assert caplog.records[0].exc_info[1] is error


async def test_lifespan_is_entered_once() -> None:
    """Entering the same lifespan twice is a RuntimeError."""
    span = concur.lifespan(lambda: None, lambda: None)
    async with span:
        pass
    with pytest.raises(RuntimeError, match="only once"):
        async with span:
            pass


def test_lifespan_bad_arguments() -> None:
    """Non-callables and a timeout that is not positive are refused at the call."""
    with pytest.raises(TypeError, match="setup"):
        concur.lifespan(1, lambda: None)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="teardown"):
        concur.lifespan(lambda: None, "x")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="teardown_timeout"):
        concur.lifespan(lambda: None, lambda: None, teardown_timeout=0)
    with pytest.raises(TypeError, match="teardown_timeout"):
        concur.lifespan(lambda: None, lambda: None, teardown_timeout=None)  # type: ignore[call-overload]


# --- randomized: the shutdown channel between run_until_signal and lifespan ------------------

#: teardown kinds: "quick" awaits a few times and ends, "stuck" waits until cut short,
#: "sync" runs in a thread for a few ticks, "coop" runs in a thread until check_cancelled
#: raises
TEARDOWNS = ("quick", "stuck", "sync", "coop")
SCENARIO_SECONDS = 10.0  # a scenario that takes longer has hung
BACKSTOP_TIMEOUT = 5.0  # every teardown_timeout: a cut by it, not by the signal, is a failure


class Shutdown:
    """One random scenario: lifespans in concurrent tasks under run_until_signal."""

    def __init__(self, kinds: list[str], shields: list[int], mode: str, grace: float) -> None:
        self.kinds = kinds
        self.shields = shields  # checkpoints of a bare-shield cleanup per task (0: none)
        self.mode = mode  # "return": fn returns; "one": one signal; "two": a second one
        self.grace = grace
        self.lock = threading.Lock()
        self.started = 0  # teardowns started
        self.ended: dict[int, str] = {}  # teardown -> "done" / "cancelled"
        self.shielded_done: set[int] = set()
        self.in_body = 0

    def teardown_started(self) -> None:
        with self.lock:
            self.started += 1
            last = self.started == len(self.kinds)
        if last and self.mode == "two":
            kill_self()  # the second signal, once every teardown has started

    def teardown(self, i: int) -> Any:
        kind = self.kinds[i]

        def end(how: str) -> None:
            with self.lock:
                assert i not in self.ended
                self.ended[i] = how

        async def in_loop() -> None:
            self.teardown_started()
            try:
                if kind == "stuck":
                    await anyio.sleep_forever()
                for _ in range(3):
                    await anyio.sleep(0)
            except anyio.get_cancelled_exc_class():
                end("cancelled")
                raise
            end("done")

        def in_thread() -> None:
            self.teardown_started()
            for _ in range(3 if kind == "sync" else 10**9):
                try:
                    concur.check_cancelled()
                except BaseException:
                    end("cancelled")
                    raise
                time.sleep(0.001)
            end("done")

        return in_loop if kind in ("quick", "stuck") else in_thread

    async def task(self, i: int, all_in: anyio.Event) -> None:
        timeout = math.inf if self.mode == "return" else BACKSTOP_TIMEOUT
        async with concur.lifespan(lambda: i, self.teardown(i), teardown_timeout=timeout):
            try:
                self.in_body += 1
                if self.in_body == len(self.kinds):
                    all_in.set()
                if self.mode != "return":
                    await anyio.sleep_forever()
            finally:
                if self.shields[i]:
                    with anyio.CancelScope(shield=True):
                        for _ in range(self.shields[i]):
                            await anyio.sleep(0)
                        self.shielded_done.add(i)

    async def fn(self) -> None:
        all_in = anyio.Event()
        async with anyio.create_task_group() as tg:
            for i in range(len(self.kinds)):
                tg.start_soon(self.task, i, all_in)
            await all_in.wait()
            if self.mode != "return":
                kill_self()

    async def run(self) -> signal.Signals | None:
        with anyio.fail_after(SCENARIO_SECONDS):
            return await concur.run_until_signal(
                self.fn, signals=[signal.SIGUSR1], grace=self.grace
            )


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=120, deadline=None, derandomize=True, database=None)
@given(
    kinds=st.lists(st.sampled_from(TEARDOWNS), min_size=1, max_size=5),
    shields=st.lists(st.integers(min_value=0, max_value=3), min_size=5, max_size=5),
    mode=st.sampled_from(["return", "one", "two"]),
    grace=st.sampled_from([0.0, 0.01, 0.05, math.inf]),
)
def test_random_shutdowns_keep_their_promises(
    backend: str, kinds: list[str], shields: list[int], mode: str, grace: float
) -> None:
    """Random lifespans in concurrent tasks, stopped by fn returning, one signal or two:
    every teardown ends at most once (a sync one cut short before its thread started never
    runs), a stuck one only by the signal's grace or the second signal (never by its own
    timeout), every bare-shield cleanup completes, the signal (or None) is returned, and
    the handler in place before is back."""
    if mode == "return":
        kinds = [kind if kind not in ("stuck", "coop") else "quick" for kind in kinds]
    elif mode == "one" and grace == math.inf:
        grace = 0.05  # one signal and no grace would wait for a stuck teardown forever
    scenario = Shutdown(kinds, shields, mode, grace)
    recorder = Recorder()
    before = signal.signal(signal.SIGUSR1, recorder)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("concur")
    logger.addHandler(handler)
    try:
        result = anyio.run(scenario.run, backend=backend)
        assert signal.getsignal(signal.SIGUSR1) is recorder
    finally:
        logger.removeHandler(handler)
        signal.signal(signal.SIGUSR1, before)
    assert recorder.got == []
    assert result is (None if mode == "return" else signal.SIGUSR1)
    for i, kind in enumerate(kinds):
        if i not in scenario.ended:
            # a sync teardown cancelled (cut short) before its thread started never runs
            assert mode == "one" or grace != math.inf
            assert mode != "return"
            assert kind in ("sync", "coop")
        elif kind in ("stuck", "coop"):
            assert scenario.ended[i] == "cancelled"
        elif mode == "return":
            assert scenario.ended[i] == "done"
    assert scenario.shielded_done == {i for i in range(len(kinds)) if shields[i]}
    messages = [record.getMessage() for record in records]
    assert not [m for m in messages if "teardown_timeout" in m], messages
    if mode == "return":
        assert messages == []
