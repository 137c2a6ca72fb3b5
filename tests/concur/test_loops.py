"""concur._loops: where the calling thread stands, and the tools to reach another loop.

The module has no public names; :mod:`concur._runner` and :mod:`concur._interop` build on
it. Its async parts run on asyncio and trio.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import math
import re
import signal
import subprocess
import sys
import threading
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
import sniffio
import trio
from concur_helpers import (
    BACKENDS,
    WAIT,
    in_thread,
    main_thread_only,  # noqa: F401  (a fixture)
)

import concur
from concur import _loops as loops

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
other: contextvars.ContextVar[int] = contextvars.ContextVar("other", default=0)


# --- check_backend ------------------------------------------------------------------------------


def test_check_backend_takes_the_two_backends() -> None:
    """ "asyncio" and "trio", the names in BACKENDS, pass the check."""
    assert loops.BACKENDS == ("asyncio", "trio")
    for backend in loops.BACKENDS:
        loops.check_backend(backend)


@pytest.mark.parametrize("backend", ["curio", "Trio", "", None, b"trio", ("asyncio",)])
def test_check_backend_refuses_anything_else_naming_it(backend: object) -> None:
    """Any other value is a ``ValueError`` naming the argument, the choices and the value."""
    message = f'backend must be "asyncio" or "trio", got {backend!r}'
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        loops.check_backend(backend)


# --- loop_running_here --------------------------------------------------------------------------


def test_no_loop_runs_in_a_thread_without_one() -> None:
    """Without a loop, in this thread or a fresh one, the answer is False."""
    assert loops.loop_running_here() is False
    assert in_thread(loops.loop_running_here) is False


async def test_a_loop_runs_here_on_the_loop_thread() -> None:
    """In a task, and in sync code it calls, a loop runs here; in its worker threads none."""

    def sync_code() -> bool:
        return loops.loop_running_here()

    assert loops.loop_running_here() is True
    assert sync_code() is True
    assert await anyio.to_thread.run_sync(loops.loop_running_here) is False
    assert await concur.to_thread(loops.loop_running_here) is False


def test_a_plain_asyncio_loop_is_seen_in_tasks_and_callbacks() -> None:
    """asyncio run without anyio: seen in a coroutine and in a ``call_soon`` callback."""
    seen: list[bool] = []

    async def main() -> None:
        seen.append(loops.loop_running_here())
        done = asyncio.Event()

        def callback() -> None:
            seen.append(loops.loop_running_here())
            done.set()

        asyncio.get_running_loop().call_soon(callback)
        await done.wait()

    asyncio.run(main())
    assert seen == [True, True]
    assert loops.loop_running_here() is False


def test_a_plain_trio_run_is_seen() -> None:
    """trio run without anyio is seen, in a task and in sync code it calls."""

    async def main() -> tuple[bool, bool]:
        return loops.loop_running_here(), (lambda: loops.loop_running_here())()

    assert trio.run(main) == (True, True)
    assert loops.loop_running_here() is False


def test_asking_never_imports_trio() -> None:
    """Asking in a process where trio was never imported leaves trio unimported."""
    code = (
        "import sys\n"
        "from concur import _loops\n"
        "before = 'trio' in sys.modules\n"
        "print(before, _loops.loop_running_here(), 'trio' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["False", "False", "False"], out.stderr


# --- in_worker_thread ---------------------------------------------------------------------------


def test_no_worker_thread_without_a_loop() -> None:
    """The main thread and a plain thread are not worker threads."""
    assert loops.in_worker_thread() is False
    assert in_thread(loops.in_worker_thread) is False


async def test_worker_threads_of_anyio_and_concur_are_worker_threads() -> None:
    """``anyio.to_thread`` and ``concur.to_thread`` threads are; the loop's and a plain one not."""
    assert loops.in_worker_thread() is False
    assert await anyio.to_thread.run_sync(loops.in_worker_thread) is True
    assert await concur.to_thread(loops.in_worker_thread) is True
    assert await anyio.to_thread.run_sync(in_thread, loops.in_worker_thread) is False


async def test_a_worker_thread_whose_task_is_cancelled_is_still_one() -> None:
    """Once its waiting task is cancelled, the thread is still a worker thread."""
    started, cancelled = threading.Event(), threading.Event()
    seen: list[object] = []

    def worker() -> None:
        started.set()
        cancelled.wait(WAIT)
        try:
            anyio.from_thread.check_cancelled()
        except BaseException as exc:  # the cancellation of the waiting task
            seen.append(exc)
        seen.append(loops.in_worker_thread())

    cancelled_class = anyio.get_cancelled_exc_class()
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(anyio.to_thread.run_sync, worker))
            await anyio.to_thread.run_sync(started.wait, WAIT)
            scope.cancel()
            cancelled.set()
    assert len(seen) == 2
    assert isinstance(seen[0], cancelled_class)  # the branch under test was taken
    assert seen[1] is True


# --- on_loop_thread_error -----------------------------------------------------------------------


def test_on_loop_thread_error_says_what_deadlocks_and_what_to_do() -> None:
    """It returns (not raises) a ``RuntimeError`` naming the call, the deadlock and the fix."""
    error = loops.on_loop_thread_error("runner.run() on 'my-loop'", "await the function instead")
    assert type(error) is RuntimeError
    assert str(error) == (
        "runner.run() on 'my-loop' was called on an event loop's own thread, where blocking "
        "until the result would stop that loop from ever producing it (a deadlock); "
        "await the function instead"
    )


# --- await_fn -----------------------------------------------------------------------------------


async def add(a: int, b: int) -> int:
    await anyio.lowlevel.checkpoint()
    return a + b


class ReturnsThree:
    """A sync callable object: it has no ``__qualname__`` of its own."""

    def __call__(self) -> int:
        return 3


async def test_await_fn_calls_and_awaits() -> None:
    """An async function, or a sync one returning an awaitable, is called with *args*, awaited."""
    assert await loops.await_fn(add, (1, 2)) == 3
    assert await loops.await_fn(lambda a: add(a, 10), (5,)) == 15
    assert await loops.await_fn(anyio.lowlevel.checkpoint, ()) is None


async def test_await_fn_raises_the_functions_own_exception() -> None:
    """An exception of the function comes out as the very same object."""
    error = LookupError("gone")

    async def fails() -> None:
        await anyio.lowlevel.checkpoint()
        raise error

    with pytest.raises(LookupError) as info:
        await loops.await_fn(fails, ())
    assert info.value is error


async def test_await_fn_refuses_a_result_that_is_not_awaitable() -> None:
    """A sync function's plain result is a ``TypeError`` naming it and pointing to asyncify."""
    calls: list[int] = []

    def sync_fn(x: int) -> int:
        calls.append(x)
        return x

    message = (
        f"{sync_fn.__qualname__} is not an async function (it returned int); "
        "pass an async function, or wrap a sync one with concur.asyncify()"
    )
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        await loops.await_fn(sync_fn, (7,))
    assert calls == [7]  # it was called (once) to find out
    with pytest.raises(TypeError, match=r"^ReturnsThree is not an async function \(it returned"):
        await loops.await_fn(ReturnsThree(), ())


# --- adopt_context ------------------------------------------------------------------------------


def test_adopt_context_sets_every_variable_of_the_context_here() -> None:
    """Every variable set in the given context is set in the current one, and only there."""
    source = contextvars.Context()
    source.run(var.set, "caller")
    source.run(other.set, 5)
    target = contextvars.Context()
    target.run(loops.adopt_context, source)
    assert target.run(var.get) == "caller"
    assert target.run(other.get) == 5
    assert (var.get(), other.get()) == ("unset", 0)  # the test's own context is unchanged
    target.run(var.set, "changed in the target")
    assert source.run(var.get) == "caller"  # nor is the source


def test_adopt_context_leaves_the_async_library_variable_alone() -> None:
    """sniffio's variable, which tells the async library that runs, is not adopted."""
    library = sniffio.current_async_library_cvar
    source = contextvars.Context()
    source.run(library.set, "trio")
    source.run(var.set, "caller")
    target = contextvars.Context()
    target.run(library.set, "asyncio")
    target.run(loops.adopt_context, source)
    assert target.run(library.get) == "asyncio"
    assert target.run(var.get) == "caller"


# --- context_for_another_loop -------------------------------------------------------------------


def test_context_for_another_loop_is_a_copy() -> None:
    """Without a limiter in force it is a plain copy: same values, changes stay in the copy."""
    token = var.set("here")
    try:
        with concur.scope(timeout=5, handoff="strict"):
            context = loops.context_for_another_loop()
            assert context.run(var.get) == "here"
            assert context.run(concur.current_settings) == concur.current_settings()
            context.run(var.set, "there")
            assert var.get() == "here"
    finally:
        var.reset(token)


async def _limiter_on_a_new_loop(context: contextvars.Context, backend: str) -> Any:
    """Adopt *context* in a new event loop of *backend* (in a thread); return its limiter."""

    async def main() -> Any:
        loops.adopt_context(context)
        limiter = concur.current_settings().current_limiter()
        assert concur.current_settings().current_limiter() is limiter  # one for the whole run
        return limiter

    run = functools.partial(anyio.run, main, backend=backend)
    return await anyio.to_thread.run_sync(in_thread, run)


@pytest.mark.parametrize("other_backend", BACKENDS)
async def test_a_loop_bound_limiter_is_replaced_by_one_per_loop(other_backend: str) -> None:
    """The ambient limiter, bound to this loop, becomes one of as many tokens per loop run."""
    with concur.scope(thread_limit=2, timeout=7):
        here = concur.current_settings()
        assert isinstance(here.limiter, anyio.CapacityLimiter)
        first, second = loops.context_for_another_loop(), loops.context_for_another_loop()
        copied = first.run(concur.current_settings)
        assert copied.limiter is not here.limiter
        assert not isinstance(copied.limiter, anyio.CapacityLimiter)
        assert second.run(concur.current_settings).limiter is copied.limiter  # the same one
        assert (copied.timeout, copied.handoff) == (here.timeout, here.handoff)
        assert concur.current_settings() is here  # the caller's context is unchanged
        one = await _limiter_on_a_new_loop(first, other_backend)
        another = await _limiter_on_a_new_loop(second, other_backend)
    assert isinstance(one, anyio.CapacityLimiter)
    assert one.total_tokens == another.total_tokens == 2
    assert one is not another  # each loop run has its own
    assert here.limiter.total_tokens == 2
    assert here.limiter.borrowed_tokens == 0


async def test_two_limiters_get_two_stand_ins() -> None:
    """Different limiters in force are replaced by different limiters."""
    with concur.scope(thread_limit=2):
        two = loops.context_for_another_loop().run(concur.current_settings).limiter
    with concur.scope(thread_limit=3):
        three = loops.context_for_another_loop().run(concur.current_settings).limiter
    assert two is not three


async def test_an_unbounded_limiter_stays_unbounded_on_another_loop() -> None:
    """A shared limiter of ``math.inf`` tokens gives ``math.inf`` tokens on the other loop."""
    with concur.scope(limiter=anyio.CapacityLimiter(math.inf)):
        context = loops.context_for_another_loop()
    limiter = await _limiter_on_a_new_loop(context, "asyncio")
    assert limiter.total_tokens == math.inf


# --- call_soon ----------------------------------------------------------------------------------


async def test_call_soon_from_another_thread_runs_on_the_loop() -> None:
    """Called from a worker thread, the function runs on the loop's own thread."""
    token = anyio.lowlevel.current_token()
    ran: list[int] = []
    done = threading.Event()

    def record() -> None:
        ran.append(threading.get_ident())
        done.set()

    await anyio.to_thread.run_sync(loops.call_soon, token, record)
    assert await anyio.to_thread.run_sync(done.wait, WAIT)
    assert ran == [threading.get_ident()]


async def test_call_soon_does_not_wait_for_the_function() -> None:
    """On the loop's own thread it returns at once; the function runs at a later turn."""
    ran: list[str] = []
    done = threading.Event()

    def record() -> None:
        ran.append("ran")
        done.set()

    loops.call_soon(anyio.lowlevel.current_token(), record)
    assert ran == []
    assert await anyio.to_thread.run_sync(done.wait, WAIT)
    assert ran == ["ran"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_call_soon_on_a_finished_loop_raises(backend: str) -> None:
    """After the loop of the token finished: ``anyio.RunFinishedError``, and nothing runs."""

    async def get_token() -> anyio.lowlevel.EventLoopToken:
        return anyio.lowlevel.current_token()

    token = anyio.run(get_token, backend=backend)
    ran: list[bool] = []
    with pytest.raises(anyio.RunFinishedError):
        loops.call_soon(token, lambda: ran.append(True))
    assert ran == []


# --- wait_event ---------------------------------------------------------------------------------


def _waiting_in_wait_event(thread: threading.Thread) -> bool:
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code is loops.wait_event.__code__:
            return True
        frame = frame.f_back
    return False


def _when_waiting(thread: threading.Thread, action: Any) -> threading.Thread:
    """Start a thread that does *action* once *thread* is blocked in ``wait_event``."""

    def target() -> None:
        for _ in range(int(WAIT / 0.001)):
            if _waiting_in_wait_event(thread):
                action()
                return
            threading.Event().wait(0.001)

    helper = threading.Thread(target=target, name="test-helper")
    helper.start()
    return helper


def test_wait_event_returns_once_the_event_is_set() -> None:
    """It returns at once for a set event, and when another thread sets it."""
    event = threading.Event()
    event.set()
    loops.wait_event(event)
    event = threading.Event()
    setter = _when_waiting(threading.current_thread(), event.set)
    loops.wait_event(event)
    setter.join(WAIT)
    assert event.is_set()


@pytest.mark.usefixtures("main_thread_only")
def test_ctrl_c_interrupts_wait_event() -> None:
    """A real SIGINT while the main thread waits raises ``KeyboardInterrupt`` from the wait."""
    main = threading.main_thread()
    interrupter = _when_waiting(main, lambda: signal.pthread_kill(main.ident or 0, signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        loops.wait_event(threading.Event())
    interrupter.join(WAIT)
    assert loops.WAIT_SLICE > 0
