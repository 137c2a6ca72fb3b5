"""Tests of interrupting a cancelled thread call: handoff interrupt hooks, interrupt_with.

The DuckDB query these tests interrupt, ``HEAVY``, runs for about 46 s on this project's
2-core test machine when nothing interrupts it. No test asserts on elapsed time: each one
checks that ``duckdb.InterruptException`` was raised inside the thread, so the call ended
while the query was still running.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import duckdb
import polars as pl
import pytest
from concur_helpers import WAIT, wait_thread_event

import components
import concur

HEAVY = "SELECT sum(hash(i)) FROM range(10000000000) t(i)"
"""A query that runs for tens of seconds (46 s here, on 2 cores) unless interrupted."""

TIMEOUT = 0.5  # the per-call timeouts below: the thread has started long before


class Query:
    """A thread function running ``HEAVY`` on the cursor it is handed; records how it ended."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.done = threading.Event()
        self.cursor: duckdb.DuckDBPyConnection | None = None
        self.raised: list[BaseException] = []

    def __call__(self, cursor: duckdb.DuckDBPyConnection) -> Any:
        self.cursor = cursor
        self.started.set()
        try:
            return cursor.execute(HEAVY).fetchall()
        except BaseException as exc:
            self.raised.append(exc)
            raise
        finally:
            self.done.set()

    def in_tuple(self, pair: tuple[duckdb.DuckDBPyConnection, int]) -> Any:
        return self(pair[0])

    def keyword(self, *, con: duckdb.DuckDBPyConnection) -> Any:
        return self(con)

    def assert_interrupted(self) -> None:
        """The query was interrupted, once, in the thread (not left to run to its end)."""
        assert self.done.is_set()  # never wait here: the loop may have hooks to call
        assert len(self.raised) == 1, self.raised
        assert isinstance(self.raised[0], duckdb.InterruptException), self.raised


class Resource:
    """A resource of the tests' own whose interrupt hook records each call (and its thread).

    Its rule hands it off as it is; the hook is :meth:`interrupt`. With ``fail=True`` the
    hook raises after recording the call.
    """

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.cond = threading.Condition()
        self.threads: list[int] = []
        self.started = threading.Event()
        self.cancelled = threading.Event()

    def interrupt(self) -> None:
        with self.cond:
            self.threads.append(threading.get_ident())
            self.cond.notify_all()
        if self.fail:
            raise RuntimeError("the hook broke")

    @property
    def calls(self) -> int:
        with self.cond:
            return len(self.threads)

    def wait_calls(self, n: int, timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.threads) >= n, timeout)

    def idle(self) -> int:
        """Thread function: wait for the caller's cancellation, then 0.5 s for a hook call."""
        self.started.set()
        assert self.cancelled.wait(WAIT)
        self.wait_calls(1, timeout=0.5)  # a hook comes at once; none may come at all
        return self.calls


@concur.handoff.register(Resource, interrupt=Resource.interrupt)
def _as_is(res: Resource) -> Resource:
    return res


class Pool:
    """A resource whose generator rule hands a lease of it to the thread."""

    def __init__(self) -> None:
        self.lease = Resource()
        self.returned = threading.Event()


@concur.handoff.register(Pool, interrupt=Resource.interrupt)
def _lease(pool: Pool) -> Iterator[Resource]:
    try:
        yield pool.lease
    finally:
        pool.returned.set()


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    """The caller's connection, with a temporary table of its own (cursors cannot see it)."""
    with duckdb.connect() as con:
        con.execute("CREATE TEMP TABLE kept AS SELECT 1 AS x")
        yield con


def assert_usable(con: duckdb.DuckDBPyConnection) -> None:
    assert con.execute("SELECT x FROM kept").fetchall() == [(1,)]


def is_closed(cursor: duckdb.DuckDBPyConnection | None) -> bool:
    assert cursor is not None
    try:
        cursor.execute("SELECT 1")
    except duckdb.ConnectionException:
        return True
    return False


async def fail_when(event: threading.Event) -> None:
    await wait_thread_event(event)
    raise ValueError("a sibling failed")


async def cancel_when(event: threading.Event, scope: anyio.CancelScope) -> None:
    await wait_thread_event(event)
    scope.cancel()


def concur_log(caplog: pytest.LogCaptureFixture, level: int) -> str:
    """The records of the ``concur`` logger at *level*, formatted with their tracebacks."""
    formatter = logging.Formatter()
    return "\n".join(
        formatter.format(r)
        for r in caplog.records
        if r.name.partition(".")[0] == "concur" and r.levelno == level
    )


# --- fail-fast ------------------------------------------------------------------------------


PASSING: dict[str, Callable[[Query, duckdb.DuckDBPyConnection], tuple[Any, ...]]] = {
    "argument": lambda q, con: (q, con),
    "tuple item": lambda q, con: (q.in_tuple, (con, 1)),
    "partial argument": lambda q, con: (functools.partial(q, con),),
    "partial keyword": lambda q, con: (functools.partial(q.keyword, con=con),),
}


@pytest.mark.parametrize("passing", list(PASSING))
async def test_fail_fast_interrupts_a_running_query(
    passing: str, con: duckdb.DuckDBPyConnection, caplog: pytest.LogCaptureFixture
) -> None:
    """A sibling's failure interrupts the query of a handed-off connection; the group raises
    only the failure, the cursor is closed and the caller's connection is usable."""
    caplog.set_level(logging.DEBUG, logger="concur")
    q = Query()
    with pytest.RaisesGroup(pytest.RaisesExc(ValueError, match="sibling")):
        async with concur.TaskGroup() as tg:
            tg.spawn(*PASSING[passing](q, con))
            tg.spawn(fail_when, q.started)
    q.assert_interrupted()
    assert q.cursor is not con
    assert is_closed(q.cursor)
    assert_usable(con)
    assert "InterruptException" in concur_log(caplog, logging.DEBUG)  # discarded, logged


async def test_fail_fast_interrupts_a_query_spawned_with_call(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """A sync call made with concur.call inside a failing group is interrupted too."""
    q = Query()
    with pytest.RaisesGroup(pytest.RaisesExc(ValueError, match="sibling")):
        async with concur.TaskGroup() as tg:
            tg.spawn(concur.call, q, con)
            tg.spawn(fail_when, q.started)
    q.assert_interrupted()
    assert_usable(con)


async def _gather(q: Query, con: duckdb.DuckDBPyConnection) -> object:
    return await concur.gather(functools.partial(q, con), fail_when(q.started))


async def _map_async(q: Query, con: duckdb.DuckDBPyConnection) -> object:
    def job(item: duckdb.DuckDBPyConnection | None) -> Any:
        if item is None:
            assert q.started.wait(WAIT)
            raise ValueError("a sibling failed")
        return q(item)

    return await concur.map_async(job, [con, None], limit=2)


@pytest.mark.parametrize("run", [_gather, _map_async], ids=["gather", "map_async"])
async def test_fail_fast_of_gather_and_map_async_interrupts_a_sync_job(
    run: Callable[[Query, duckdb.DuckDBPyConnection], Awaitable[object]],
    con: duckdb.DuckDBPyConnection,
) -> None:
    """gather's and map_async's fail-fast interrupt a sync job's query; the failure is raised
    bare."""
    q = Query()
    with pytest.raises(ValueError, match="sibling"):
        await run(q, con)
    q.assert_interrupted()
    assert is_closed(q.cursor)
    assert_usable(con)


# --- timeouts and outside cancellation ------------------------------------------------------


async def _call_timeout(q: Query, con: duckdb.DuckDBPyConnection) -> object:
    return await concur.call(q, con, timeout=TIMEOUT)


async def _fail_after(q: Query, con: duckdb.DuckDBPyConnection) -> object:
    with anyio.fail_after(TIMEOUT):
        return await concur.to_thread(q, con)


async def _scope_timeout(q: Query, con: duckdb.DuckDBPyConnection) -> object:
    with concur.scope(timeout=TIMEOUT):
        return await concur.call(q, con)


@pytest.mark.parametrize(
    "run",
    [_call_timeout, _fail_after, _scope_timeout],
    ids=["call(timeout=)", "fail_after", "scope(timeout=)"],
)
async def test_timeout_interrupts_a_running_query(
    run: Callable[[Query, duckdb.DuckDBPyConnection], Awaitable[object]],
    con: duckdb.DuckDBPyConnection,
) -> None:
    """A per-call timeout interrupts the query and raises TimeoutError, not the
    InterruptException."""
    q = Query()
    with pytest.raises(TimeoutError):
        await run(q, con)
    q.assert_interrupted()
    assert is_closed(q.cursor)
    assert_usable(con)


async def test_group_timeout_interrupts_a_spawned_query(con: duckdb.DuckDBPyConnection) -> None:
    """A TaskGroup's per-spawn timeout interrupts the query; the group raises TimeoutError."""
    q = Query()
    with pytest.RaisesGroup(TimeoutError):
        async with concur.TaskGroup(timeout=TIMEOUT) as tg:
            tg.spawn(q, con)
    q.assert_interrupted()
    assert_usable(con)


@pytest.mark.parametrize("abandon", [False, True], ids=["wait", "abandon_on_cancel"])
async def test_outside_cancellation_interrupts_a_running_query(
    abandon: bool, con: duckdb.DuckDBPyConnection
) -> None:
    """Cancelling the caller from outside interrupts the query, with or without
    abandon_on_cancel (the abandoned thread then stops early)."""
    q = Query()
    got: list[object] = []
    with anyio.CancelScope() as outer:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_when, q.started, outer)
            got.append(await concur.to_thread(q, con, abandon_on_cancel=abandon))
    assert outer.cancelled_caught
    assert got == []
    await wait_thread_event(q.done)  # an abandoned thread ends on its own time
    q.assert_interrupted()
    with anyio.fail_after(WAIT):  # and closes its cursor after that
        while not is_closed(q.cursor):
            await anyio.sleep(0.01)
    assert_usable(con)


async def test_a_query_started_again_after_an_interrupt_is_interrupted_again(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """The hook is called again while the thread runs on: a thread that catches the first
    interrupt and runs the query again is interrupted again."""
    raised: list[BaseException] = []
    started = threading.Event()

    def stubborn(cursor: duckdb.DuckDBPyConnection) -> str:
        started.set()
        for _ in range(2):
            try:
                cursor.execute(HEAVY).fetchall()
            except duckdb.InterruptException as exc:
                raised.append(exc)
        return "ran on"

    with anyio.CancelScope() as outer:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_when, started, outer)
            await concur.to_thread(stubborn, con)
    assert outer.cancelled_caught
    assert len(raised) == 2
    assert_usable(con)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_in_concur_run_interrupts_a_running_query(
    backend: str, con: duckdb.DuckDBPyConnection
) -> None:
    """A real SIGINT during concur.run interrupts the query, then raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")
    q = Query()

    async def main() -> object:
        return await concur.to_thread(q, con)

    def interrupter() -> None:
        if q.started.wait(WAIT):
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    thread = threading.Thread(target=interrupter, name="test-interrupter")
    thread.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            concur.run(main, backend=backend)  # type: ignore[arg-type]
    finally:
        thread.join(WAIT)
    q.assert_interrupted()
    assert_usable(con)


# --- rules of one's own ------------------------------------------------------------------


async def test_user_rule_hook_is_called_until_the_thread_returns() -> None:
    """A rule's hook gets the handed value, on the loop's thread, at once and again until the
    thread returns; then no more, the rule's cleanup has run and the result is discarded."""
    loop_thread = threading.get_ident()
    pool = Pool()
    got: list[object] = []

    def ignore_two(lease: Resource) -> str:
        assert lease is pool.lease
        lease.started.set()
        assert lease.wait_calls(3)  # ignores the first two interrupts
        return "finished anyway"

    with anyio.CancelScope() as outer:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_when, pool.lease.started, outer)
            got.append(await concur.to_thread(ignore_two, pool))
    assert outer.cancelled_caught
    assert got == []
    assert pool.returned.is_set()
    calls = pool.lease.calls
    assert calls >= 3
    assert set(pool.lease.threads) == {loop_thread}
    await anyio.sleep(0.3)  # three more periods: a hook called after the return would show
    assert pool.lease.calls == calls


async def test_what_the_thread_raises_after_the_hook_is_discarded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once the hook has been called, the thread's exception is logged at DEBUG and the
    caller gets its TimeoutError."""
    caplog.set_level(logging.DEBUG, logger="concur")
    res = Resource()

    def raise_when_interrupted(s: Resource) -> None:
        assert s.wait_calls(1)
        raise RuntimeError("stopped by the hook")

    with pytest.raises(TimeoutError):
        await concur.call(raise_when_interrupted, res, timeout=TIMEOUT)
    assert res.calls >= 1
    assert "stopped by the hook" in concur_log(caplog, logging.DEBUG)


async def test_failing_hook_is_logged_and_changes_nothing(
    con: duckdb.DuckDBPyConnection, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook that raises is logged at WARNING; the other hooks still run and the caller
    still gets the group's error."""
    caplog.set_level(logging.DEBUG, logger="concur")
    broken = Resource(fail=True)
    q = Query()

    def work(res: Resource, cursor: duckdb.DuckDBPyConnection) -> Any:
        return q(cursor)

    with pytest.RaisesGroup(pytest.RaisesExc(ValueError, match="sibling")):
        async with concur.TaskGroup() as tg:
            tg.spawn(work, broken, con)
            tg.spawn(fail_when, q.started)
    q.assert_interrupted()
    assert broken.calls >= 1
    assert "the hook broke" in concur_log(caplog, logging.WARNING)
    assert_usable(con)


async def test_closed_cursor_is_not_an_error_for_its_hook(
    con: duckdb.DuckDBPyConnection, caplog: pytest.LogCaptureFixture
) -> None:
    """The DuckDB hook ignores a cursor the thread already closed: nothing is logged."""
    caplog.set_level(logging.DEBUG, logger="concur")
    started = threading.Event()
    seen = threading.Event()

    def close_then_wait(cursor: duckdb.DuckDBPyConnection) -> None:
        cursor.close()
        with concur.interrupt_with(seen.set):
            started.set()
            assert seen.wait(WAIT)
            time.sleep(0.3)  # the cursor's hook runs again meanwhile, on the closed cursor

    with anyio.CancelScope() as outer:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_when, started, outer)
            await concur.to_thread(close_then_wait, con)
    assert outer.cancelled_caught
    assert seen.is_set()
    assert concur_log(caplog, logging.WARNING) == ""
    assert_usable(con)


async def _off(res: Resource) -> int:
    with concur.scope(handoff="off"):
        return await concur.to_thread(Resource.idle, res)


async def _bound_self(res: Resource) -> int:
    return await concur.to_thread(res.idle)


async def _closure(res: Resource) -> int:
    return await concur.to_thread(lambda: res.idle())


async def _handed(res: Resource) -> int:
    return await concur.to_thread(Resource.idle, res)


@pytest.mark.parametrize(
    ("run", "hooked"),
    [(_off, False), (_bound_self, False), (_closure, False), (_handed, True)],
    ids=['handoff="off"', "bound method's self", "closure", "handed (control)"],
)
async def test_hooks_run_only_for_handed_values(
    run: Callable[[Resource], Awaitable[int]], hooked: bool
) -> None:
    """No hook runs under handoff="off", for a bound method's self or a closure's value;
    one does for the same value handed as an argument."""
    res = Resource()

    async def cancel() -> None:
        await wait_thread_event(res.started)
        outer.cancel()
        res.cancelled.set()

    with anyio.CancelScope() as outer:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel)
            await run(res)
    assert outer.cancelled_caught
    assert (res.calls > 0) is hooked


# --- interrupt_with -------------------------------------------------------------------------


async def test_interrupt_with_interrupts_a_connection_the_thread_opened() -> None:
    """interrupt_with() in a thread registers a hook for its block: fail-fast interrupts the
    thread's own DuckDB query."""
    q = Query()

    def own_query() -> Any:
        with duckdb.connect() as own, concur.interrupt_with(own.interrupt):
            return q(own)

    with pytest.RaisesGroup(pytest.RaisesExc(ValueError, match="sibling")):
        async with concur.TaskGroup() as tg:
            tg.spawn(own_query)
            tg.spawn(fail_when, q.started)
    q.assert_interrupted()


async def test_interrupt_with_hook_is_called_only_while_its_block_runs() -> None:
    """A hook registered by interrupt_with() is called, on the loop's thread, while its
    block runs, and not after the block has ended."""
    loop_thread = threading.get_ident()
    before, during = Resource(), Resource()
    started = threading.Event()

    def work() -> str:
        with concur.interrupt_with(before.interrupt):
            pass
        with concur.interrupt_with(during.interrupt):
            started.set()
            assert during.wait_calls(2)
        return "ran on"

    with anyio.CancelScope() as outer:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_when, started, outer)
            await concur.to_thread(work)
    assert outer.cancelled_caught
    assert before.calls == 0
    assert during.calls >= 2
    assert set(during.threads) == {loop_thread}


def _block_ran(res: Resource) -> bool:
    with concur.interrupt_with(res.interrupt):
        return True


async def test_interrupt_with_outside_a_concur_thread_only_runs_its_block() -> None:
    """Outside a thread concur started for a call (the event loop, an anyio thread, a plain
    thread), interrupt_with() runs its block and registers nothing."""
    res = Resource()
    assert _block_ran(res)
    assert await anyio.to_thread.run_sync(_block_ran, res)
    got: list[bool] = []
    thread = threading.Thread(target=lambda: got.append(_block_ran(res)))
    thread.start()
    thread.join(WAIT)
    assert got == [True]
    assert res.calls == 0


async def test_interrupt_with_in_a_cancelled_anyio_thread_calls_nothing() -> None:
    """interrupt_with() in a thread that concur did not start is never interrupted, even
    when that thread's caller is cancelled."""
    res = Resource()

    def idle() -> int:
        with concur.interrupt_with(res.interrupt):
            return res.idle()

    async def cancel() -> None:
        await wait_thread_event(res.started)
        outer.cancel()
        res.cancelled.set()

    with anyio.CancelScope() as outer:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel)
            await anyio.to_thread.run_sync(idle)
    assert outer.cancel_called
    assert res.calls == 0


def test_interrupt_with_refuses_a_hook_that_is_not_callable() -> None:
    """interrupt_with() with a hook that is not callable raises TypeError."""
    with pytest.raises(TypeError), concur.interrupt_with(42):  # type: ignore[arg-type]
        pass


# --- components -----------------------------------------------------------------------------


class FailingGenerator(components.FeatureGenerator):
    """An async generator that fails once the SQL generator's query has started."""

    name = "companion"

    def __init__(self, started: threading.Event) -> None:
        self.started = started

    async def agenerate(self, frame: pl.DataFrame) -> pl.DataFrame:
        await wait_thread_event(self.started)
        raise ValueError("the companion failed")


async def test_sql_generator_query_is_interrupted_by_fail_fast(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """select_best_features' fail-fast interrupts SQLWindowFeatures' running query; the
    companion's error propagates and the generator's connection stays usable."""
    started = threading.Event()
    raised: list[BaseException] = []
    generate = components.SQLWindowFeatures.generate

    def slow_query(self: components.SQLWindowFeatures, inputs: list[str]) -> str:
        started.set()
        return HEAVY

    def recording_generate(self: components.SQLWindowFeatures, frame: pl.DataFrame) -> Any:
        try:
            return generate(self, frame)
        except BaseException as exc:
            raised.append(exc)
            raise

    monkeypatch.setattr(components.SQLWindowFeatures, "query", slow_query)
    monkeypatch.setattr(components.SQLWindowFeatures, "generate", recording_generate)
    with components.SQLWindowFeatures(name="sql") as sql:
        with pytest.raises(ValueError, match="companion"):
            await components.select_best_features(
                components.make_dataset(1000),
                target=components.TARGET,
                generators=[sql, FailingGenerator(started)],
                selector=components.CorrelationSelector(),
                k=3,
            )
        assert len(raised) == 1
        assert isinstance(raised[0], duckdb.InterruptException), raised
        assert sql.connection.execute("SELECT 42").fetchall() == [(42,)]


# --- a randomized stress test of the interrupt machinery ----------------------------------------


class Flag:
    """A resource whose interrupt hook sets an event its thread waits on."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.hooked = 0

    def interrupt(self) -> None:
        self.hooked += 1
        self.event.set()


@concur.handoff.register(Flag, interrupt=Flag.interrupt)
def _flag(flag: Flag) -> Flag:
    return flag


async def _one_stress_scenario(rng: random.Random) -> None:
    limiter = anyio.CapacityLimiter(rng.randint(1, 4))
    errors: list[str] = []
    ended: list[tuple[threading.Event, threading.Event]] = []

    def work(
        flag: Flag, ignore: int, how: str, done: threading.Event, started: threading.Event
    ) -> str:
        # Waits for its interrupts, each bounded: a call the machinery forgot fails the
        # test (recorded) instead of hanging it. A quick call returns at once.
        started.set()
        try:
            if how == "quick":
                return "quick"
            own = Flag() if how == "with" else flag
            with (
                concur.interrupt_with(own.interrupt) if how == "with" else contextlib.nullcontext()
            ):
                for _ in range(ignore + 1):
                    if not own.event.wait(timeout=5):
                        errors.append(f"a cancelled {how} call was not interrupted")
                        return "late"
                    own.event.clear()
            return "interrupted"
        finally:
            done.set()

    async def job(abandon: bool, how: str) -> None:
        # captured, not arguments: only the Flag is handed off
        done, started = threading.Event(), threading.Event()
        ended.append((done, started))
        ignore = rng.randint(0, 1)

        def run(flag: Flag) -> str:
            return work(flag, ignore, how, done, started)

        await concur.to_thread(run, Flag(), limiter=limiter, abandon_on_cancel=abandon)

    async def failing(delay: float) -> None:
        await anyio.sleep(delay)
        raise ValueError("sibling failed")

    n = rng.randint(1, 5)
    plans = [(rng.random() < 0.3, rng.choice(["arg", "with", "quick"])) for _ in range(n)]
    how_it_ends = rng.choice(["fail-fast", "timeout", "outside"])
    delay = rng.uniform(0, 0.02)
    with anyio.CancelScope() as outside:
        try:
            with anyio.move_on_after(delay if how_it_ends == "timeout" else 30):
                async with concur.TaskGroup() as tg:
                    for abandon, how in plans:
                        tg.spawn(job, abandon, how)
                    if how_it_ends == "fail-fast":
                        tg.spawn(failing, delay)
                    elif how_it_ends == "outside":
                        await anyio.sleep(delay)
                        outside.cancel()
        except* ValueError:
            pass
    # A thread holds its token until it returns: once none is borrowed, every thread that
    # ran (abandoned ones too) has ended; a call cancelled before its thread started never
    # runs. Nothing may be forgotten.
    with anyio.fail_after(10):
        while limiter.borrowed_tokens:
            await anyio.sleep(0.005)
    assert all(done.is_set() for done, started in ended if started.is_set())
    assert errors == []


@pytest.mark.bound(120)
async def test_random_cancellations_always_interrupt_running_calls() -> None:
    """Random groups of thread calls (hooked by argument or interrupt_with, abandoning or
    waiting, some ignoring the first interrupt) cancelled at random moments: every running
    thread is interrupted until it returns, and every limiter token comes back."""
    rng = random.Random(14)
    for _ in range(40):
        await _one_stress_scenario(rng)
