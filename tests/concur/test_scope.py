"""Tests of ``concur.scope``: ambient settings in sync and async code, inheritance, timeouts."""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

import anyio
import pytest
from concur_helpers import WAIT

import concur


def borrowed_of(limiter: anyio.CapacityLimiter) -> functools.partial[float]:
    # a limiter is no thread-safe value: the thread reads it through a closure
    def borrowed() -> float:
        return limiter.borrowed_tokens

    return functools.partial(borrowed)


async def test_scope_in_async_code_sets_limiter_and_policy() -> None:
    """with/async with scope() sets the limiter and policy for calls inside, and restores them."""
    limiter = anyio.CapacityLimiter(2)
    with concur.scope(limiter=limiter, handoff="strict"):
        assert await concur.call(borrowed_of(limiter)) == 1
        assert await concur.to_thread(borrowed_of(limiter)) == 1
        with pytest.raises(concur.UnsafeHandoffError):
            await concur.call(len, [1])
    async with concur.scope(limiter=limiter):
        assert await concur.to_thread(borrowed_of(limiter)) == 1
    assert await concur.to_thread(borrowed_of(limiter)) == 0
    with pytest.warns(concur.UnsafeHandoffWarning):
        await concur.call(len, [1])


def test_scope_in_sync_code_reaches_event_loop_runs() -> None:
    """A scope entered in sync code is ambient in each anyio.run inside it, on both backends."""
    limiter_total: list[float] = []

    async def main() -> None:
        with pytest.raises(concur.UnsafeHandoffError):
            await concur.call(len, [1])
        with pytest.raises(TimeoutError):
            await concur.call(anyio.sleep_forever)
        limiter_total.append(await concur.call(len, "abc"))

    with concur.scope(handoff="strict", timeout=0.01):
        for backend in ("asyncio", "trio"):
            anyio.run(main, backend=backend)
    assert limiter_total == [3, 3]


async def test_nested_scopes_inherit_settings() -> None:
    """An inner scope inherits what it does not set, and overrides what it does."""
    limiter = anyio.CapacityLimiter(3)
    with concur.scope(limiter=limiter, handoff="strict"), concur.scope(timeout=0.01) as inner:
        assert inner.settings.limiter is limiter
        assert inner.settings.handoff == "strict"
        assert inner.settings.timeout == 0.01
        assert await concur.to_thread(borrowed_of(limiter)) == 1
        with pytest.raises(concur.UnsafeHandoffError):
            await concur.call(len, [1])
        with pytest.raises(TimeoutError):
            await concur.call(anyio.sleep_forever)
        with concur.scope(handoff="off", timeout=5) as innermost:
            assert innermost.settings.limiter is limiter
            assert await concur.call(len, [1]) == 1
        with concur.scope(thread_limit=1) as own:
            assert own.settings.limiter is not limiter
            assert own.settings.handoff == "strict"


async def test_group_inherits_scope_and_nests() -> None:
    """A TaskGroup inherits the enclosing scope's settings, and a nested group the outer's."""
    limiter = anyio.CapacityLimiter(2)

    async def component() -> float:
        return await concur.to_thread(borrowed_of(limiter))

    with concur.scope(limiter=limiter):
        async with concur.TaskGroup() as outer:
            a = outer.spawn(component)
            async with concur.TaskGroup(handoff="off") as inner:
                b = inner.spawn(component)
                c = inner.spawn(concur.call, len, [1])  # no warning: the inner policy
    assert await a >= 1
    assert await b >= 1
    assert await c == 1
    with concur.scope(handoff="strict"), pytest.RaisesGroup(concur.UnsafeHandoffError):
        async with concur.TaskGroup(limiter=limiter) as tg:
            tg.spawn(len, [1])


def test_scope_thread_limit_outside_loop_gives_each_run_its_own_limiter() -> None:
    """scope(thread_limit=N) outside a loop gives each anyio.run its own limiter of N tokens."""
    seen: list[Any] = []

    async def main(sc: concur.scope) -> None:
        limiter = sc.settings.current_limiter()
        assert sc.settings.current_limiter() is limiter  # one per run, stable within it
        assert limiter.total_tokens == 2
        assert limiter is not anyio.to_thread.current_default_thread_limiter()
        seen.append(limiter)
        started = [threading.Event() for _ in range(3)]
        arrived = threading.Semaphore(0)
        release = threading.Event()

        def block(i: int) -> float:
            started[i].set()
            arrived.release()
            assert release.wait(WAIT)
            return limiter.borrowed_tokens

        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(concur.to_thread, block, i)
            for _ in range(2):
                assert await anyio.to_thread.run_sync(arrived.acquire, True, WAIT)
            await anyio.wait_all_tasks_blocked()
            assert limiter.borrowed_tokens == 2
            assert sum(e.is_set() for e in started) == 2
            release.set()

    with concur.scope(thread_limit=2) as sc:
        for backend in ("asyncio", "trio"):
            anyio.run(main, sc, backend=backend)
    assert len(seen) == 2
    assert seen[0] is not seen[1]


async def test_scope_timeout_is_default_for_call_not_body() -> None:
    """scope(timeout=) bounds each call() inside it, not the scope's body; call(timeout=) wins."""

    def cooperative() -> None:
        for _ in range(1_000_000):
            concur.check_cancelled()
            threading.Event().wait(0.001)

    with concur.scope(timeout=0.01):
        with pytest.raises(TimeoutError):
            await concur.call(anyio.sleep_forever)
        with pytest.raises(TimeoutError):
            await concur.call(cooperative)
        await anyio.sleep(0.05)  # the body is not bounded
        await concur.call(anyio.sleep, 0.05, timeout=5)


@pytest.mark.parametrize(
    "options",
    [
        {"thread_limit": 0},
        {"thread_limit": -3},
        {"thread_limit": 2, "limiter": "L"},
        {"handoff": "nope"},
        {"timeout": -1},
    ],
    ids=["zero", "negative", "both", "policy", "timeout"],
)
def test_scope_bad_options_are_value_errors(options: dict[str, Any]) -> None:
    """thread_limit < 1, limiter= and thread_limit=, a bad policy or timeout: ValueError."""
    if options.get("limiter") == "L":
        options["limiter"] = anyio.CapacityLimiter(1)
    with pytest.raises(ValueError):
        concur.scope(**options)


def test_scope_thread_limit_must_be_int() -> None:
    """A non-int thread_limit is a TypeError."""
    with pytest.raises(TypeError):
        concur.scope(thread_limit=1.5)  # type: ignore[arg-type]


# --- one scope object shared by many tasks (issue 9, bug 5) ------------------------------------

SHARED = concur.scope(thread_limit=2)  # the natural way to share a limiter: a module constant


async def test_one_scope_object_entered_by_two_tasks_exits_in_any_order() -> None:
    """Each task's exit undoes its own entry, whichever task leaves first."""
    entered = [anyio.Event(), anyio.Event()]
    leave = [anyio.Event(), anyio.Event()]
    after: dict[int, object] = {}

    async def task(i: int) -> None:
        with SHARED:
            entered[i].set()
            await leave[i].wait()
        after[i] = concur.scope().settings.limiter

    async with anyio.create_task_group() as tg:
        tg.start_soon(task, 0)
        await entered[0].wait()
        tg.start_soon(task, 1)
        await entered[1].wait()
        leave[0].set()  # the first to enter leaves first: it used to pop the other's token
        await anyio.wait_all_tasks_blocked()
        leave[1].set()
    assert after == {0: None, 1: None}


async def test_a_shared_scope_caps_the_threads_of_every_task_that_enters_it() -> None:
    """Tasks entering one module-level scope share its limiter: two threads at most."""
    lock = threading.Lock()
    running = [0, 0]  # now, peak

    def work() -> None:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.002)
        with lock:
            running[0] -= 1

    async def task() -> None:
        with SHARED:
            for _ in range(3):
                await concur.to_thread(work)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(task)
    assert 1 <= running[1] <= 2


def test_a_shared_scope_entered_by_threads_at_once() -> None:
    """Threads entering one scope object at once each get their entry undone on exit."""
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def enter_and_leave() -> None:
        try:
            with SHARED:
                barrier.wait(timeout=10)
                assert concur.scope().settings.limiter is not None
                barrier.wait(timeout=10)
            assert concur.scope().settings.limiter is None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=enter_and_leave) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert errors == []


def test_exiting_a_scope_out_of_order_is_a_clear_error() -> None:
    """Leaving an outer scope before the inner one raises RuntimeError saying what to do."""
    outer, inner = concur.scope(handoff="off"), concur.scope(handoff="strict")
    outer.__enter__()
    inner.__enter__()
    with pytest.raises(RuntimeError, match="reverse order"):
        outer.__exit__(None, None, None)
    inner.__exit__(None, None, None)
    outer.__exit__(None, None, None)
    assert concur.scope().settings.handoff == "warn"
