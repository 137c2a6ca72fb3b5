"""Helpers shared by the foundation tests (not a test module)."""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import anyio
import pytest

import concur

WAIT = 20.0  # a generous bound for threading waits, never reached when the tests pass


async def fetch(url: str) -> str:
    await anyio.lowlevel.checkpoint()
    return f"async:{url}:{threading.get_ident()}"


def compute(x: str) -> str:
    return f"sync:{x}:{threading.get_ident()}"


class Component:
    async def amethod(self, x: str) -> str:
        return await fetch(x)

    def method(self, x: str) -> str:
        return compute(x)


class AsyncCallable:
    async def __call__(self, x: str) -> str:
        return await fetch(x)


class SyncCallable:
    def __call__(self, x: str) -> str:
        return compute(x)


_component = Component()

DISCOVERY: list[tuple[str, Callable[[str], Any], str]] = [
    ("async function", fetch, "async"),
    ("sync function", compute, "sync"),
    ("partial of async", functools.partial(fetch), "async"),
    ("partial of sync", functools.partial(compute), "sync"),
    ("partial of partial of async", functools.partial(functools.partial(fetch)), "async"),
    ("bound async method", _component.amethod, "async"),
    ("bound sync method", _component.method, "sync"),
    ("partial of bound async method", functools.partial(_component.amethod), "async"),
    ("object with async __call__", AsyncCallable(), "async"),
    ("object with sync __call__", SyncCallable(), "sync"),
]


def check_colour(result: str, colour: str, loop_thread: int) -> None:
    kind, arg, thread = result.split(":")
    assert (kind, arg) == (colour, "x")
    if colour == "async":
        assert int(thread) == loop_thread
    else:
        assert int(thread) != loop_thread


class Peak:
    """Counts threads running at once, and the most that ever did."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.running -= 1


async def wait_thread_event(event: threading.Event) -> None:
    assert await anyio.to_thread.run_sync(event.wait, WAIT)


def returns_coroutine() -> Coroutine[Any, Any, str]:
    return fetch("u")


# --- concur.run and concur.Runner (test_interop.py, test_runner.py) -----------------------------


BACKENDS = ["asyncio", "trio"]
# worker-thread caches of anyio and trio; the conftest checks that none is busy
IDLE_WORKERS = ("AnyIO worker thread", "Trio thread", "Trio worker thread")

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [
        thread
        for thread in threading.enumerate()
        if thread not in before and thread.is_alive() and not thread.name.startswith(IDLE_WORKERS)
    ]


@pytest.fixture(autouse=True)
def no_loop_thread_left() -> Iterator[None]:
    """After each test, no thread it started (an event loop's above all) is still alive."""
    before = set(threading.enumerate())
    yield
    left = new_threads(before)
    for thread in left:  # helper threads of the test itself may be finishing
        thread.join(WAIT)
    left = new_threads(before)
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


def interrupt_when(event: threading.Event) -> threading.Thread:
    """Send a real SIGINT to the main thread once *event* is set."""
    import signal

    def target() -> None:
        if event.wait(WAIT):
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    thread = threading.Thread(target=target, name="test-interrupter")
    thread.start()
    return thread


def cleanup_task(started: threading.Event, cleaned: threading.Event, cancelled: list[bool]) -> Any:
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


@pytest.fixture
def main_thread_only() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")


class SyncJobPeak:
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
