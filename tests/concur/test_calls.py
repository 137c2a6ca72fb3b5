"""Tests of ``concur.call``, ``concur.to_thread``, the hard thread cap and ``check_cancelled``."""

from __future__ import annotations

import functools
import gc
import re
import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from concur_helpers import (
    DISCOVERY,
    WAIT,
    Peak,
    check_colour,
    compute,
    fetch,
    returns_coroutine,
    wait_thread_event,
)

import concur

# --- discovery --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "colour"), [d[1:] for d in DISCOVERY], ids=[d[0] for d in DISCOVERY]
)
async def test_call_discovers_sync_and_async(fn: Callable[[str], Any], colour: str) -> None:
    """call() awaits async callables on the loop and runs sync ones in a worker thread."""
    check_colour(await concur.call(fn, "x"), colour, threading.get_ident())


async def test_call_returns_value_and_raises_bare() -> None:
    """call() returns the value and raises the call's own exception unwrapped."""

    async def afail() -> None:
        raise KeyError("a")

    def sfail() -> None:
        raise KeyError("s")

    assert await concur.call(functools.partial(compute, "x"))
    with pytest.raises(KeyError, match="a"):
        await concur.call(afail)
    with pytest.raises(KeyError, match="s"):
        await concur.call(sfail)


async def test_to_thread_runs_in_worker_thread() -> None:
    """to_thread() runs a sync function in another thread and returns its result."""
    check_colour(await concur.to_thread(compute, "x"), "sync", threading.get_ident())


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("runner", [concur.call, concur.to_thread])
async def test_non_callable_is_type_error_naming_type(runner: Callable[..., Any]) -> None:
    """A non-callable gives a TypeError naming its type."""
    with pytest.raises(TypeError, match="int"):
        await runner(42)


@pytest.mark.parametrize("runner", [concur.call, concur.to_thread])
async def test_coroutine_object_is_type_error_showing_fix(runner: Callable[..., Any]) -> None:
    """A coroutine object gives a TypeError showing concur.call(fetch, ...) and is closed."""
    coro = fetch("u")
    with pytest.raises(TypeError, match=re.escape("concur.call(fetch, ...)")):
        await runner(coro)
    assert coro.cr_frame is None  # closed
    del coro
    gc.collect()


@pytest.mark.parametrize("runner", [concur.call, concur.to_thread])
async def test_sync_function_returning_coroutine(runner: Callable[..., Any]) -> None:
    """A sync function returning a coroutine gives concur's TypeError; the coroutine is closed."""
    with pytest.raises(TypeError, match="declare it async def") as info:
        await runner(returns_coroutine)
    assert "returns_coroutine" in str(info.value)
    gc.collect()


async def test_sync_function_returning_coroutine_abandonable() -> None:
    """The returned-coroutine check also applies with abandon_on_cancel=True."""
    with pytest.raises(TypeError, match="declare it async def"):
        await concur.to_thread(returns_coroutine, abandon_on_cancel=True)
    gc.collect()


async def test_call_rejects_bad_timeout() -> None:
    """call() refuses a negative timeout with ValueError."""
    with pytest.raises(ValueError, match="timeout"):
        await concur.call(compute, "x", timeout=-1)


# --- timeouts -----------------------------------------------------------------------------------


async def test_call_timeout_async_and_sync() -> None:
    """call(timeout=) raises TimeoutError for an async call and a cooperative sync call."""

    def cooperative() -> None:
        while True:
            concur.check_cancelled()
            threading.Event().wait(0.001)

    with pytest.raises(TimeoutError):
        await concur.call(anyio.sleep_forever, timeout=0.01)
    with pytest.raises(TimeoutError):
        await concur.call(cooperative, timeout=0.01)


# --- check_cancelled ----------------------------------------------------------------------------


@pytest.mark.parametrize("runner", ["call", "to_thread"])
async def test_check_cancelled_raises_in_thread(runner: str) -> None:
    """check_cancelled() raises the cancellation in the thread once its caller is cancelled."""
    started = threading.Event()
    seen: list[BaseException] = []

    def work() -> None:
        started.set()
        try:
            for _ in range(1_000_000):
                concur.check_cancelled()
                threading.Event().wait(0.001)
        except BaseException as exc:
            seen.append(exc)
            raise

    run = concur.call if runner == "call" else concur.to_thread
    with anyio.CancelScope() as cs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, work)
            await wait_thread_event(started)
            cs.cancel()
    assert cs.cancelled_caught
    assert len(seen) == 1
    assert isinstance(seen[0], anyio.get_cancelled_exc_class())


async def test_check_cancelled_on_loop_thread_is_runtime_error() -> None:
    """check_cancelled() on the event loop's thread raises RuntimeError."""
    with pytest.raises(RuntimeError):
        concur.check_cancelled()


def test_check_cancelled_outside_worker_is_runtime_error() -> None:
    """check_cancelled() outside any loop, and in a plain thread, raises RuntimeError."""
    with pytest.raises(RuntimeError):
        concur.check_cancelled()
    errors: list[BaseException] = []

    def in_thread() -> None:
        try:
            concur.check_cancelled()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)


async def test_check_cancelled_passes_when_not_cancelled() -> None:
    """check_cancelled() returns quietly in a thread whose caller is not cancelled."""
    assert await concur.to_thread(concur.check_cancelled) is None


# --- the hard cap --------------------------------------------------------------------------------


@pytest.mark.parametrize("abandon", [True, False], ids=["abandon", "wait"])
async def test_hard_cap_holds_under_cancellation(abandon: bool) -> None:
    """A cancelled caller's thread holds its token until it returns: threads never exceed tokens."""
    limiter = anyio.CapacityLimiter(2)
    peak = Peak()
    started = [threading.Event() for _ in range(3)]
    release = [threading.Event() for _ in range(3)]

    def block(i: int) -> int:
        with peak:
            started[i].set()
            assert release[i].wait(WAIT)
        return i

    third: list[int] = []
    callers = anyio.CancelScope()
    callers_done = anyio.Event()

    async def run_callers() -> None:
        with callers:
            async with anyio.create_task_group() as tg:
                for i in range(2):
                    tg.start_soon(
                        functools.partial(
                            concur.to_thread, block, i, limiter=limiter, abandon_on_cancel=abandon
                        )
                    )
        callers_done.set()

    async def run_third() -> None:
        third.append(await concur.to_thread(block, 2, limiter=limiter))

    async with anyio.create_task_group() as outer:
        outer.start_soon(run_callers)
        for i in range(2):
            await wait_thread_event(started[i])
        callers.cancel()
        if abandon:
            await callers_done.wait()  # the callers left at once, their threads run on
        else:
            await anyio.wait_all_tasks_blocked()
            assert not callers_done.is_set()  # the callers wait for their threads
        assert limiter.borrowed_tokens == 2
        outer.start_soon(run_third)
        await anyio.wait_all_tasks_blocked()
        assert limiter.statistics().tasks_waiting == 1
        assert not started[2].is_set()  # no third thread while the two cancelled ones run
        release[0].set()
        await wait_thread_event(started[2])
        release[1].set()
        release[2].set()
    assert callers.cancelled_caught
    assert third == [2]
    # every token comes back once the abandoned threads have returned
    holders = [object(), object()]
    for holder in holders:
        await limiter.acquire_on_behalf_of(holder)
    for holder in holders:
        limiter.release_on_behalf_of(holder)
    assert peak.peak == 2
    assert limiter.borrowed_tokens == 0


async def test_hard_cap_many_calls_never_exceed_tokens() -> None:
    """Many sync calls under a limiter of 3, some abandoned, never run more than 3 threads."""
    limiter = anyio.CapacityLimiter(3)
    peak = Peak()
    gate = threading.Event()

    def work() -> None:
        with peak:
            gate.wait(0.002)

    with anyio.move_on_after(0.05):
        async with anyio.create_task_group() as tg:
            for i in range(30):
                tg.start_soon(
                    functools.partial(
                        concur.to_thread, work, limiter=limiter, abandon_on_cancel=i % 2 == 0
                    )
                )
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(functools.partial(concur.to_thread, work, limiter=limiter))
    holders = [object() for _ in range(3)]
    for holder in holders:
        await limiter.acquire_on_behalf_of(holder)
    for holder in holders:
        limiter.release_on_behalf_of(holder)
    assert 1 <= peak.peak <= 3


async def test_abandoned_call_exception_is_discarded(caplog: pytest.LogCaptureFixture) -> None:
    """An abandoned call's exception is discarded silently and logged at DEBUG on 'concur'."""
    limiter = anyio.CapacityLimiter(1)
    started = threading.Event()
    release = threading.Event()

    def fail() -> None:
        started.set()
        assert release.wait(WAIT)
        raise ValueError("discarded")

    caplog.set_level("DEBUG", logger="concur")
    with anyio.CancelScope() as cs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                functools.partial(concur.to_thread, fail, limiter=limiter, abandon_on_cancel=True)
            )
            await wait_thread_event(started)
            cs.cancel()
    assert cs.cancelled_caught
    release.set()
    holder = object()
    await limiter.acquire_on_behalf_of(holder)  # the thread has returned and released
    limiter.release_on_behalf_of(holder)
    assert any("discarded" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


async def test_cancelled_before_thread_starts_never_runs() -> None:
    """A call cancelled while waiting for a token never runs its function."""
    limiter = anyio.CapacityLimiter(1)
    ran: list[bool] = []
    holder = object()
    await limiter.acquire_on_behalf_of(holder)
    try:
        for abandon in (False, True):
            with anyio.CancelScope() as cs:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(
                        functools.partial(
                            concur.to_thread,
                            lambda: ran.append(True),
                            limiter=limiter,
                            abandon_on_cancel=abandon,
                        )
                    )
                    await anyio.wait_all_tasks_blocked()
                    cs.cancel()
            assert cs.cancelled_caught
    finally:
        limiter.release_on_behalf_of(holder)
    assert ran == []
    assert limiter.borrowed_tokens == 0


# --- bad input names the argument (issue 9, item 6) ---------------------------------------------


@pytest.mark.parametrize("limiter", [5, "two", None.__class__])
async def test_to_thread_refuses_a_limiter_that_is_not_a_capacity_limiter(limiter: Any) -> None:
    """A number or other object as limiter= is a TypeError naming limiter, before any thread."""
    with pytest.raises(TypeError, match=r"limiter must be an anyio\.CapacityLimiter"):
        await concur.to_thread(int, "1", limiter=limiter)


async def test_to_thread_refuses_a_semaphore_as_limiter() -> None:
    """An anyio.Semaphore is not a limiter either."""
    with pytest.raises(TypeError, match="limiter must be"):
        await concur.to_thread(int, "1", limiter=anyio.Semaphore(2))  # type: ignore[arg-type]


async def test_to_thread_of_an_async_function_says_so() -> None:
    """to_thread(async_fn) says it is an async function and what to write instead."""

    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match=r"fetch is an async function: .*concur.call\(fetch"):
        await concur.to_thread(fetch)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [1, "yes", None])
async def test_to_thread_refuses_a_non_bool_abandon_on_cancel(value: Any) -> None:
    """abandon_on_cancel= takes True or False only."""
    with pytest.raises(TypeError, match="abandon_on_cancel must be True or False"):
        await concur.to_thread(int, "1", abandon_on_cancel=value)


@pytest.mark.parametrize("make", [concur.scope, concur.TaskGroup])
def test_an_unhashable_handoff_policy_names_handoff(make: Any) -> None:
    """handoff=[] is a TypeError naming handoff, not 'unhashable type'."""
    with pytest.raises(TypeError, match="handoff must be"):
        make(handoff=[])
