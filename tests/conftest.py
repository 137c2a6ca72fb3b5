"""Test harness: every async test runs on asyncio and trio, bounded, and leaks nothing.

- An ``async def`` test without a marker is an anyio test, run once per backend.
- ``@pytest.mark.trio`` tests are pytest-trio's (for its ``nursery`` fixture).
- Every async test runs inside ``anyio.fail_after(ASYNC_TEST_BOUND)``; mark a test
  ``@pytest.mark.bound(seconds)`` to change it. pytest-timeout stays as a 120 s backstop.
- After each test, no thread may still be running a call (idle worker-cache threads of
  anyio and trio are not leaks).
"""

from __future__ import annotations

import functools
import inspect
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

ASYNC_TEST_BOUND = 30.0
LEAK_GRACE = 5.0


def pytest_configure(config: pytest.Config) -> None:
    # A shell starts background jobs with SIGINT ignored, and Python then leaves it so: the
    # tests that send themselves a real Ctrl-C need Python's KeyboardInterrupt handler
    # (child processes then start with SIGINT at its default too).
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line("markers", "bound(seconds): the fail_after bound of an async test")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> None:
    # Mark at collection, before parametrization: anyio's plugin then adds the
    # ``anyio_backend`` fixture, so the backend combines with a test's own parameters.
    # (Marking later, in pytest_collection_modifyitems, made anyio's plugin rebuild each
    # item from scratch, dropping the test's own parameters.)
    if not (collector.istestfunction(obj, name) and inspect.iscoroutinefunction(obj)):
        return
    own = [mark.name for mark in getattr(obj, "pytestmark", ())]
    if "trio" in own or "anyio" in own:
        return
    if collector.get_closest_marker("trio") or collector.get_closest_marker("anyio"):
        return
    pytest.mark.anyio(obj)


def _bounded(fn: Callable[..., Any], seconds: float) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        with anyio.fail_after(seconds):
            return await fn(*args, **kwargs)

    return wrapper


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[None]:
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        marker = pyfuncitem.get_closest_marker("bound")
        seconds = float(marker.args[0]) if marker else ASYNC_TEST_BOUND
        pyfuncitem.obj = _bounded(pyfuncitem.obj, seconds)
    yield


_IDLE_MODULE_PARTS = (
    "threading.py",
    "queue.py",
    "selectors.py",
    "/concurrent/futures/",
    "/asyncio/",
    "/anyio/",
    "/trio/",
    "/outcome/",
    "/zmq/",
    "/jupyter_client/",
    "/ipykernel/",
    "/tornado/",
    "/_pytest/",
    "/pytest_timeout",
)


def _busy_threads() -> list[str]:
    frames = sys._current_frames()
    me = threading.get_ident()
    busy = []
    for thread in threading.enumerate():
        if thread.ident in (me, None) or thread is threading.main_thread():
            continue
        frame = frames.get(thread.ident)
        where = []
        while frame is not None:
            filename = frame.f_code.co_filename
            if not any(part in filename for part in _IDLE_MODULE_PARTS):
                where.append(f"{filename}:{frame.f_lineno} in {frame.f_code.co_name}")
            frame = frame.f_back
        if where:
            busy.append(f"{thread.name}: {where[0]}")
    return busy


@pytest.fixture(autouse=True)
def _no_thread_left_running() -> Iterator[None]:
    """Fail a test that leaves a thread running a call after it ends."""
    yield
    deadline = time.monotonic() + LEAK_GRACE
    busy = _busy_threads()
    while busy and time.monotonic() < deadline:
        time.sleep(0.01)
        busy = _busy_threads()
    if busy:
        pytest.fail(f"threads still running a call after the test: {busy}", pytrace=False)
