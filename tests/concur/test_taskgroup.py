"""Tests of ``concur.TaskGroup``: discovery, fail-fast, coroutine objects, timeouts, names."""

from __future__ import annotations

import contextvars
import functools
import gc
import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from concur_helpers import DISCOVERY, check_colour, fetch, returns_coroutine, wait_thread_event
from wait_helpers import outcome_of

import concur


@pytest.mark.parametrize(
    ("fn", "colour"), [d[1:] for d in DISCOVERY], ids=[d[0] for d in DISCOVERY]
)
async def test_spawn_discovers_sync_and_async(fn: Callable[[str], Any], colour: str) -> None:
    """spawn() runs async callables on the loop and sync ones in a worker thread."""
    async with concur.TaskGroup() as tg:
        handle = tg.spawn(fn, "x")
    check_colour(await handle, colour, threading.get_ident())


async def test_spawn_coroutine_object_runs() -> None:
    """A coroutine object passed to spawn() runs as a task."""
    async with concur.TaskGroup() as tg:
        handle = tg.spawn(fetch("x"))
    assert (await handle).startswith("async:x:")


@pytest.mark.parametrize("timeout", [None, 10.0], ids=["plain", "timeout"])
async def test_spawned_coroutine_in_cancelled_group_gives_no_warning(timeout: float | None) -> None:
    """A coroutine object spawned into a group cancelled before it starts gives no warning."""
    async with concur.TaskGroup(timeout=timeout) as tg:
        tg.cancel()
        handle = tg.spawn(fetch("x"))
    assert handle.status is anyio.TaskHandle.Status.CANCELLED
    del handle
    gc.collect()


async def test_spawn_coroutine_after_group_exit_is_closed() -> None:
    """A coroutine object spawned into a finished group raises RuntimeError and is closed."""
    async with concur.TaskGroup() as tg:
        pass
    coro = fetch("x")
    with pytest.raises(RuntimeError):
        tg.spawn(coro)
    assert coro.cr_frame is None
    del coro
    gc.collect()


async def test_spawn_coroutine_with_args_is_type_error() -> None:
    """A coroutine object given with arguments is a TypeError, and it is closed."""
    async with concur.TaskGroup() as tg:
        with pytest.raises(TypeError, match="coroutine object"):
            tg.spawn(fetch("x"), 1)  # type: ignore[call-overload]
    gc.collect()


async def test_spawn_non_callable_is_type_error() -> None:
    """spawn() of a non-callable is a TypeError naming its type, raised at the call."""
    async with concur.TaskGroup() as tg:
        with pytest.raises(TypeError, match="int"):
            tg.spawn(42)  # type: ignore[arg-type]


async def test_spawn_sync_function_returning_coroutine() -> None:
    """A spawned sync function returning a coroutine fails with concur's TypeError."""
    with pytest.RaisesGroup(pytest.RaisesExc(TypeError, match="declare it async def")):
        async with concur.TaskGroup() as tg:
            tg.spawn(returns_coroutine)
    gc.collect()


async def test_start_as_in_anyio() -> None:
    """start() waits for task_status.started() and returns its value; non-async is TypeError."""

    async def server(*, task_status: anyio.abc.TaskStatus[int]) -> None:
        task_status.started(7)
        await anyio.sleep_forever()

    async with concur.TaskGroup() as tg:
        assert await tg.start(server) == 7
        with pytest.raises(TypeError):
            await tg.start(lambda: None)  # type: ignore[arg-type, return-value]
        coro = fetch("x")
        with pytest.raises(TypeError, match=r"tg\.start\(fetch, \.\.\.\)"):
            await tg.start(coro)  # type: ignore[arg-type]
        tg.cancel()


async def test_group_not_entered_is_runtime_error() -> None:
    """Using a group before entering it, or entering it twice, is a RuntimeError."""
    tg = concur.TaskGroup()
    with pytest.raises(RuntimeError, match="async with"):
        tg.spawn(fetch, "x")
    async with tg:
        pass
    with pytest.raises(RuntimeError, match="already"):
        async with tg:
            pass


# --- fail-fast -------------------------------------------------------------------------------


async def test_fail_fast_cancels_async_and_sync_siblings() -> None:
    """The first failure cancels async siblings and stops sync ones at check_cancelled()."""
    async_started = anyio.Event()
    thread_started = threading.Event()
    seen: list[str] = []

    async def async_sibling() -> None:
        async_started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            seen.append("async cancelled")
            raise

    cancelled_exc = anyio.get_cancelled_exc_class()

    def sync_sibling() -> None:
        thread_started.set()
        try:
            for _ in range(1_000_000):
                concur.check_cancelled()
                threading.Event().wait(0.001)
        except cancelled_exc:
            seen.append("sync cancelled")
            raise

    async def failing() -> None:
        await async_started.wait()
        await wait_thread_event(thread_started)
        raise ValueError("first")

    with pytest.RaisesGroup(pytest.RaisesExc(ValueError, match="first")):
        async with concur.TaskGroup() as tg:
            tg.spawn(async_sibling)
            tg.spawn(sync_sibling)
            tg.spawn(failing)
    assert sorted(seen) == ["async cancelled", "sync cancelled"]


async def test_sync_failure_cancels_async_sibling() -> None:
    """A failing sync task cancels an async sibling; the group raises ExceptionGroup."""
    started = anyio.Event()

    def fail() -> None:
        raise KeyError("sync")

    async def waiter() -> None:
        started.set()
        await anyio.sleep_forever()

    with pytest.RaisesGroup(KeyError):
        async with concur.TaskGroup() as tg:
            tg.spawn(waiter)
            await started.wait()
            tg.spawn(fail)


async def test_cancel_cancels_tasks_and_body() -> None:
    """cancel() cancels every task and the body; the group exits quietly."""
    reached: list[bool] = []
    async with concur.TaskGroup() as tg:
        tg.spawn(anyio.sleep_forever)
        tg.cancel()
        await anyio.lowlevel.checkpoint()
        reached.append(True)
    assert reached == []
    assert tg.cancel_scope.cancel_called


# --- settings ----------------------------------------------------------------------------------


async def test_group_limiter_is_ambient_in_spawned_tasks() -> None:
    """A component calling concur.to_thread from a spawned task uses the group's limiter."""
    limiter = anyio.CapacityLimiter(3)
    default = anyio.to_thread.current_default_thread_limiter()

    def probe() -> tuple[float, float]:
        return limiter.borrowed_tokens, default.borrowed_tokens

    async def component() -> tuple[float, float]:
        return await concur.to_thread(probe)

    async with concur.TaskGroup(limiter=limiter) as tg:
        nested = tg.spawn(component)
        direct = tg.spawn(probe)
    assert (await nested)[0] >= 1
    assert (await direct)[0] >= 1
    assert limiter.borrowed_tokens == 0


async def test_group_thread_limit_caps_threads() -> None:
    """TaskGroup(thread_limit=2) runs at most two sync tasks at once."""
    started = [threading.Event() for _ in range(3)]
    arrived = threading.Semaphore(0)
    release = threading.Event()

    def block(i: int) -> int:
        started[i].set()
        arrived.release()
        assert release.wait(20)
        return i

    async with concur.TaskGroup(thread_limit=2) as tg:
        handles = [tg.spawn(block, i) for i in range(3)]
        for _ in range(2):
            assert await anyio.to_thread.run_sync(arrived.acquire, True, 20)
        await anyio.wait_all_tasks_blocked()
        assert sum(e.is_set() for e in started) == 2  # the third waits for a token
        release.set()
    assert [await h for h in handles] == [0, 1, 2]


async def test_group_handoff_policy_is_ambient_in_spawned_tasks() -> None:
    """A component calling concur.to_thread from a spawned task uses the group's handoff policy."""

    async def component() -> None:
        await concur.to_thread(len, [1])

    with pytest.RaisesGroup(concur.UnsafeHandoffError):
        async with concur.TaskGroup(handoff="strict") as tg:
            tg.spawn(component)


async def test_group_timeout_bounds_each_spawn() -> None:
    """TaskGroup(timeout=) fails a spawned async or sync call with TimeoutError."""

    def cooperative() -> None:
        for _ in range(1_000_000):
            concur.check_cancelled()
            threading.Event().wait(0.001)

    with pytest.RaisesGroup(TimeoutError):
        async with concur.TaskGroup(timeout=0.01) as tg:
            tg.spawn(anyio.sleep_forever)
    with pytest.RaisesGroup(TimeoutError):
        async with concur.TaskGroup(timeout=0.01) as tg:
            tg.spawn(cooperative)
    with pytest.RaisesGroup(TimeoutError):
        async with concur.TaskGroup(timeout=0.01) as tg:
            tg.spawn(anyio.sleep(10))


async def test_group_timeout_spares_start_body_and_nested_calls() -> None:
    """TaskGroup(timeout=) does not bound start(), the body, or nested calls."""

    async def slow_start(*, task_status: anyio.abc.TaskStatus[str]) -> None:
        await anyio.sleep(0.05)
        await concur.call(anyio.sleep, 0.05)  # nested call in a started task
        task_status.started("up")

    async with concur.TaskGroup(timeout=0.01) as tg:
        assert await tg.start(slow_start) == "up"
        await anyio.sleep(0.05)  # the body
        await concur.call(anyio.sleep, 0.05)  # a nested call from the body


async def test_group_inherits_scope_timeout_for_spawn() -> None:
    """A group without timeout= bounds its spawns by the enclosing scope's timeout."""
    with concur.scope(timeout=0.01), pytest.RaisesGroup(TimeoutError):
        async with concur.TaskGroup() as tg:
            tg.spawn(anyio.sleep_forever)


@pytest.mark.parametrize(
    "options",
    [{"thread_limit": 0}, {"thread_limit": 2, "limiter": "L"}, {"handoff": "nope"}],
    ids=["thread_limit<1", "both", "policy"],
)
def test_bad_options_are_value_errors(options: dict[str, Any]) -> None:
    """thread_limit < 1, both limiter= and thread_limit=, or an unknown policy: ValueError."""
    if options.get("limiter") == "L":
        options["limiter"] = anyio.CapacityLimiter(1)
    with pytest.raises(ValueError):
        concur.TaskGroup(**options)


async def test_group_name_prefixes_task_names() -> None:
    """TaskGroup(name="g") prefixes its tasks' names."""
    names: list[str] = []

    async def own_name() -> None:
        names.append(anyio.get_current_task().name)

    def sync_task() -> None:
        pass

    async def ready(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()

    async with concur.TaskGroup(name="g") as tg:
        a = tg.spawn(own_name)
        b = tg.spawn(sync_task)
        c = tg.spawn(own_name, name="custom")
        d = tg.spawn(fetch("x"))
        await tg.start(ready)
    assert tg.name == "g"
    assert a.name == "g.test_group_name_prefixes_task_names.<locals>.own_name"
    assert b.name == "g.test_group_name_prefixes_task_names.<locals>.sync_task"
    assert c.name == "g.custom"
    assert d.name == "g.fetch"
    assert sorted(names) == sorted([a.name, c.name])
    async with concur.TaskGroup() as tg:
        e = tg.spawn(own_name, name="plain")
    assert e.name == "plain"


async def test_spawned_handle_awaitable_for_results() -> None:
    """The TaskHandle returned by spawn() gives the task's result once the group is done."""

    def add(a: int, b: int) -> int:
        return a + b

    async def aadd(a: int, b: int) -> int:
        return a + b

    async with concur.TaskGroup() as tg:
        handles = [
            tg.spawn(add, 1, 2),
            tg.spawn(aadd, 3, 4),
            tg.spawn(functools.partial(add, 5), 6),
        ]
    assert [await h for h in handles] == [3, 7, 11]


async def test_group_timeout_not_ambient_in_spawned_tasks() -> None:
    """Inside a spawned task the group's timeout is not the default for nested calls."""

    async def nested_default() -> float | None:
        return concur.scope().settings.timeout

    with concur.scope(timeout=30):
        async with concur.TaskGroup(timeout=10) as tg:
            handle = tg.spawn(nested_default)
            body_default = concur.scope().settings.timeout
    assert await handle == 30
    assert body_default == 30


async def test_spawn_from_another_task_gets_group_settings() -> None:
    """A task outside the group that spawns into it still gives the task the group's settings."""
    limiter = anyio.CapacityLimiter(2)

    def probe() -> float:
        return limiter.borrowed_tokens

    async def component() -> float:
        return await concur.to_thread(probe)

    handles: list[anyio.TaskHandle[float]] = []
    groups: list[concur.TaskGroup] = []
    ready, spawned = anyio.Event(), anyio.Event()

    async def spawner() -> None:  # started before the group: its context lacks the settings
        await ready.wait()
        handles.append(groups[0].spawn(component))
        handles.append(groups[0].spawn(probe))
        spawned.set()

    async with anyio.create_task_group() as outer:
        outer.start_soon(spawner)
        async with concur.TaskGroup(limiter=limiter) as tg:
            groups.append(tg)
            ready.set()
            await spawned.wait()
    assert [await h >= 1 for h in handles] == [True, True]


async def test_start_from_another_task_gets_group_settings() -> None:
    """A task started with start() from a task outside the group gets the group's settings."""
    limiter = anyio.CapacityLimiter(2)
    seen: list[bool] = []
    groups: list[concur.TaskGroup] = []
    ready, done = anyio.Event(), anyio.Event()

    async def service(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        seen.append(concur.scope().settings.limiter is limiter)
        task_status.started()

    async def starter() -> None:  # started before the group: its context lacks the settings
        await ready.wait()
        await groups[0].start(service)
        seen.append(concur.scope().settings.limiter is limiter)  # the caller's are restored
        done.set()

    async with anyio.create_task_group() as outer:
        outer.start_soon(starter)
        async with concur.TaskGroup(limiter=limiter) as tg:
            groups.append(tg)
            ready.set()
            await done.wait()
    assert seen == [True, False]


async def test_infinite_timeout_lifts_an_enclosing_scope_timeout() -> None:
    """``TaskGroup(timeout=math.inf)`` bounds no spawn, even inside ``scope(timeout=)``."""
    import math

    release = anyio.Event()

    async def waits() -> str:
        await release.wait()
        return "done"

    async def releaser() -> None:
        await anyio.sleep(0.05)  # longer than the scope's per-call timeout
        release.set()

    with concur.scope(timeout=0.01):
        async with concur.TaskGroup(timeout=math.inf) as tg:
            handle = tg.spawn(waits)
            tg.spawn(releaser)
    assert await handle == "done"


# --- KeyboardInterrupt and SystemExit in a task (issue 9, bug 4) --------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_in_a_task_reaches_the_caller_in_a_group(
    kind: type[BaseException], backend: str
) -> None:
    """A task's interrupt cancels its siblings and leaves the group in a BaseExceptionGroup."""
    sibling_cancelled = []

    async def interrupting() -> None:
        await anyio.lowlevel.checkpoint()
        raise kind()

    async def sibling() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            sibling_cancelled.append(True)
            raise

    async def main() -> tuple[BaseException | None, bool]:
        handle = None
        try:
            async with concur.TaskGroup() as tg:
                handle = tg.spawn(interrupting)
                tg.spawn(sibling)
        except BaseExceptionGroup as group:
            assert handle is not None
            with pytest.raises(concur.TaskFailed):  # asyncio: cancelled; trio: failed
                await handle
            return group, True
        return None, False

    where, caught = outcome_of(main, backend)
    assert where == "caught"
    assert isinstance(caught, tuple)
    group, _ = caught
    assert isinstance(group, BaseExceptionGroup)
    assert [type(e) for e in group.exceptions] == [kind]
    assert sibling_cancelled == [True]


# --- an anyio task group (issue 10, item 5) -----------------------------------------------------


async def test_a_concur_group_is_an_anyio_task_group() -> None:
    """isinstance holds, and anyio's own APIs take it: a real TCP listener serves into it."""
    received: list[bytes] = []
    served = anyio.Event()

    async def handler(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            received.append(await stream.receive())
            served.set()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, concur.TaskGroup() as tg:
        assert isinstance(tg, anyio.abc.TaskGroup)
        tg.start_soon(listener.serve, handler, tg)
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            await client.send(b"hello")
            await served.wait()
        tg.cancel()
    assert received == [b"hello"]


async def test_start_soon_and_create_task_run_in_the_ambient_settings_unbounded() -> None:
    """They see the group's limiter; the group's per-call timeout does not bound them."""
    limiter = anyio.CapacityLimiter(3)
    seen: list[object] = []
    release = anyio.Event()

    async def task() -> str:
        seen.append(concur.scope().settings.limiter)
        await release.wait()  # longer than the per-call timeout of spawn
        return "done"

    async with concur.TaskGroup(limiter=limiter, timeout=0.01) as tg:
        tg.start_soon(task)
        handle = tg.create_task(task())
        other = tg.create_task(task(), context=contextvars.copy_context())
        await anyio.sleep(0.05)
        release.set()
    assert seen == [limiter, limiter, limiter]
    assert handle.return_value == other.return_value == "done"


async def test_start_soon_refuses_a_sync_function_as_anyio_does() -> None:
    """Sync functions go through spawn only: start_soon raises anyio's TypeError."""
    async with concur.TaskGroup() as tg:
        with pytest.raises(TypeError, match="coroutine"):
            tg.start_soon(len, [])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="create_task"):
            tg.create_task(len)  # type: ignore[arg-type]


async def test_start_with_return_handle() -> None:
    """start(..., return_handle=True) returns a handle with the start value, as anyio's."""

    async def service(*, task_status: anyio.abc.TaskStatus[int]) -> str:
        task_status.started(7)
        await anyio.lowlevel.checkpoint()
        return "ended"

    async with concur.TaskGroup() as tg:
        handle = await tg.start(service, return_handle=True)
        assert handle.start_value == 7
    assert handle.return_value == "ended"


async def test_cancel_takes_a_reason() -> None:
    """cancel(reason) as anyio's: the group ends, the body's wait is cancelled."""
    async with concur.TaskGroup() as tg:
        tg.spawn(anyio.sleep_forever)
        tg.cancel("enough")
        await anyio.sleep_forever()
    assert tg.cancel_scope.cancelled_caught


async def test_a_partial_task_is_named_after_its_function() -> None:
    """A spawned partial in a named group is named "group.function", not its repr."""
    async with concur.TaskGroup(name="fan") as tg:
        event = threading.Event()
        event.set()
        handle = tg.spawn(functools.partial(wait_thread_event, event))
        thread_handle = tg.spawn(functools.partial(int, "3"))
    assert handle.name == "fan.wait_thread_event"
    assert thread_handle.name == "fan.int"


async def test_an_unnamed_sync_task_is_named_after_its_function() -> None:
    """A sync function spawned in an unnamed group is named module.function, as anyio would."""
    async with concur.TaskGroup() as tg:
        handle = tg.spawn(int, "3")
        coro_handle = tg.spawn(fetch("u"))
    assert handle.name == "builtins.int"
    assert coro_handle.name.endswith("fetch")
