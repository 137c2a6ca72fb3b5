"""Tests of the handoff of arguments to worker threads: polars, DuckDB, pyarrow, policies, rules."""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import attrs
import duckdb
import polars as pl
import pyarrow as pa
import pytest

import concur

WAIT = 20.0


def identity(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def frame() -> pl.DataFrame:
    return pl.DataFrame({"a": [1, 2, 3], "b": [10, 20, 30]})


async def wait_thread_event(event: threading.Event) -> None:
    assert await anyio.to_thread.run_sync(event.wait, WAIT)


def assert_closed(cursor: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(duckdb.ConnectionException):
        cursor.execute("select 1")


# --- polars ----------------------------------------------------------------------------------


async def test_polars_frame_mutated_in_thread_leaves_caller_intact() -> None:
    """A DataFrame mutated in place inside the thread leaves the caller's frame intact."""
    df = frame()

    def mutate(got: pl.DataFrame) -> list[str]:
        got.insert_column(0, pl.Series("z", [0, 0, 0]))
        got.drop_in_place("a")
        return got.columns

    assert await concur.call(mutate, df) == ["z", "b"]
    assert await concur.to_thread(mutate, df) == ["z", "b"]
    assert df.columns == ["a", "b"]
    assert df.equals(frame())


async def test_polars_series_and_lazyframe_are_cloned() -> None:
    """A Series and a LazyFrame reach the thread as clones."""
    series = pl.Series("s", [1, 2, 3])
    lazy = frame().lazy()

    def mutate(s: pl.Series, lf: pl.LazyFrame) -> tuple[bool, bool]:
        same = (s is series, lf is lazy)
        s.append(pl.Series("s", [4]))
        return same

    assert await concur.call(mutate, series, lazy) == (False, False)
    assert series.to_list() == [1, 2, 3]


async def test_tuple_holding_frame_reaches_thread_with_clone() -> None:
    """A tuple (and a named tuple) holding a frame reaches the thread holding a clone."""

    class Pair(NamedTuple):
        n: int
        df: pl.DataFrame

    df = frame()

    def mutate(t: tuple[int, pl.DataFrame], p: Pair) -> tuple[bool, bool, type]:
        t[1].drop_in_place("a")
        p.df.drop_in_place("b")
        return t[1] is df, p.df is df, type(p)

    assert await concur.call(mutate, (1, df), Pair(2, df)) == (False, False, Pair)
    assert df.columns == ["a", "b"]


async def test_partial_args_and_keywords_are_handed_off() -> None:
    """The args and keywords stored in a functools.partial are handed off too."""
    df, other = frame(), frame()

    def mutate(a: pl.DataFrame, *, b: pl.DataFrame) -> tuple[bool, bool]:
        a.drop_in_place("a")
        b.drop_in_place("b")
        return a is df, b is other

    assert await concur.call(functools.partial(mutate, df, b=other)) == (False, False)
    assert df.columns == other.columns == ["a", "b"]


async def test_bound_method_self_passed_as_is() -> None:
    """A bound method's __self__ is passed as it is, even under the strict policy."""

    class Unknown:
        def me(self) -> object:
            return self

    obj = Unknown()
    df = frame()
    with concur.scope(handoff="strict"):
        assert await concur.call(obj.me) is obj
        assert await concur.call(df.drop_in_place, "a") is not None
    assert df.columns == ["b"]  # the caller's own frame: not cloned


async def test_async_call_arguments_are_not_touched() -> None:
    """Arguments of async calls stay on the loop and are not handed off."""
    df = frame()

    async def same(got: pl.DataFrame, items: list[int]) -> bool:
        return got is df

    with concur.scope(handoff="strict"):
        assert await concur.call(same, df, [1])


# --- DuckDB ----------------------------------------------------------------------------------


async def test_duckdb_cursor_closed_after_success() -> None:
    """A connection reaches the thread as a fresh cursor, closed after the call succeeds."""
    con = duckdb.connect()
    seen: list[duckdb.DuckDBPyConnection] = []

    def query(cur: duckdb.DuckDBPyConnection) -> int:
        seen.append(cur)
        return int(cur.sql("select 42").fetchall()[0][0])

    try:
        assert await concur.call(query, con) == 42
        assert await concur.to_thread(query, con) == 42
        assert await concur.to_thread(query, con, abandon_on_cancel=True) == 42
        assert len(seen) == 3
        for cur in seen:
            assert cur is not con
            assert_closed(cur)
        assert con.execute("select 1").fetchall() == [(1,)]  # the caller's stays open
    finally:
        con.close()


async def test_duckdb_cursor_closed_after_error() -> None:
    """The cursor is closed after the call fails, and the error propagates."""
    con = duckdb.connect()
    seen: list[duckdb.DuckDBPyConnection] = []

    def fail(cur: duckdb.DuckDBPyConnection) -> None:
        seen.append(cur)
        raise ValueError("boom")

    try:
        with pytest.raises(ValueError, match="boom"):
            await concur.call(fail, con)
        with pytest.raises(ValueError, match="boom"):
            await concur.to_thread(fail, con, abandon_on_cancel=True)
        assert len(seen) == 2
        for cur in seen:
            assert_closed(cur)
    finally:
        con.close()


@pytest.mark.parametrize("abandon", [False, True], ids=["wait", "abandon"])
async def test_duckdb_cursor_closed_after_cancellation(abandon: bool) -> None:
    """The cursor is closed after the caller is cancelled, once the thread function returned."""
    con = duckdb.connect()
    seen: list[duckdb.DuckDBPyConnection] = []
    started = threading.Event()
    release = threading.Event()
    limiter = anyio.CapacityLimiter(1)

    def block(cur: duckdb.DuckDBPyConnection) -> None:
        seen.append(cur)
        started.set()
        assert release.wait(WAIT)

    try:
        with anyio.CancelScope() as cs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    functools.partial(
                        concur.to_thread, block, con, limiter=limiter, abandon_on_cancel=abandon
                    )
                )
                await wait_thread_event(started)
                cs.cancel()
                if not abandon:
                    release.set()
        assert cs.cancelled_caught
        release.set()
        holder = object()
        await limiter.acquire_on_behalf_of(holder)  # the thread function has returned
        limiter.release_on_behalf_of(holder)
        assert len(seen) == 1
        assert_closed(seen[0])
    finally:
        release.set()
        con.close()


async def test_duckdb_shared_connection_eight_concurrent_calls() -> None:
    """Eight concurrent sync calls on one connection each get a cursor: no "connection is busy"."""
    con = duckdb.connect()
    con.execute("create table t as select range as x from range(100000)")
    barrier = threading.Barrier(4, timeout=WAIT)

    def query(cur: duckdb.DuckDBPyConnection, i: int) -> int:
        barrier.wait()  # four queries really run at once
        return int(cur.sql(f"select sum(x) + {i} from t").fetchall()[0][0])

    try:
        async with concur.TaskGroup(thread_limit=4) as tg:
            handles = [tg.spawn(query, con, i) for i in range(8)]
        total = sum(range(100000))
        assert [await h for h in handles] == [total + i for i in range(8)]
    finally:
        con.close()


async def test_duckdb_relation_result_is_type_error() -> None:
    """Returning a DuckDB relation from a thread call raises TypeError: materialise it."""
    con = duckdb.connect()
    seen: list[duckdb.DuckDBPyConnection] = []

    def relation(cur: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
        seen.append(cur)
        return cur.sql("select 1")

    try:
        with pytest.raises(TypeError, match="materialise"):
            await concur.call(relation, con)
        with pytest.raises(TypeError, match="materialise"):
            await concur.to_thread(relation, con)
        with pytest.RaisesGroup(pytest.RaisesExc(TypeError, match="materialise")):
            async with concur.TaskGroup(thread_limit=4) as tg:
                tg.spawn(relation, con)
        for cur in seen:
            assert_closed(cur)
    finally:
        con.close()


# --- policies --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, (1, [2])], ids=["list", "dict", "tuple-list"])
async def test_strict_refuses_unsafe_values(value: object) -> None:
    """Strict refuses a list, a dict or a tuple holding a list; the function never runs."""
    ran: list[bool] = []

    def fn(v: object) -> None:
        ran.append(True)

    with concur.scope(handoff="strict"):
        with pytest.raises(concur.UnsafeHandoffError) as info:
            await concur.call(fn, value)
        with pytest.raises(concur.UnsafeHandoffError):
            await concur.to_thread(fn, value)
        with pytest.raises(concur.UnsafeHandoffError):
            await concur.call(functools.partial(fn, v=value))
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, concur.ConcurError)
    assert "builtins." in str(info.value)
    assert ran == []


async def test_strict_refusal_in_group_is_task_failure() -> None:
    """A refusal for a sync call spawned in a group is that task's failure in the ExceptionGroup."""
    ran: list[bool] = []
    with pytest.RaisesGroup(concur.UnsafeHandoffError):
        async with concur.TaskGroup(handoff="strict") as tg:
            tg.spawn(ran.append, [1])
    assert ran == []


async def test_warn_policy_warns_naming_type() -> None:
    """The default warn policy passes an unknown value with a warning naming its type."""
    value = [1, 2]

    def same(v: object) -> bool:
        return v is value

    assert issubclass(concur.UnsafeHandoffWarning, UserWarning)
    with pytest.warns(concur.UnsafeHandoffWarning, match=r"builtins\.list"):
        assert await concur.call(same, value)
    with concur.scope(handoff="warn"), pytest.warns(concur.UnsafeHandoffWarning, match="dict"):
        assert not await concur.to_thread(same, {"a": 1})


async def test_off_policy_passes_everything_as_is() -> None:
    """The off policy passes every value as it is: no warning, no clone, no cursor."""
    df = frame()
    con = duckdb.connect()
    items = [1]

    def same(a: object, b: object, c: object) -> bool:
        return a is df and b is con and c is items

    try:
        with concur.scope(handoff="off"):
            assert await concur.call(same, df, con, items)
        async with concur.TaskGroup(handoff="off") as tg:
            handle = tg.spawn(same, df, con, items)
        assert await handle
    finally:
        con.close()


def test_unknown_policy_is_value_error() -> None:
    """An unknown handoff policy is a ValueError."""
    with pytest.raises(ValueError, match="handoff"):
        concur.scope(handoff="loose")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="handoff"):
        concur.TaskGroup(handoff="loose")  # type: ignore[arg-type]


# --- rules -----------------------------------------------------------------------------------


class Buffer:
    def __init__(self, data: list[int]) -> None:
        self.data = data


@concur.handoff.register(Buffer)
def _copy_buffer(buf: Buffer) -> Buffer:
    return Buffer(list(buf.data))


class SubBuffer(Buffer):
    pass


async def test_register_plain_function_rule() -> None:
    """A registered function's result is what the thread gets, and it matches subclasses."""
    buf, sub = Buffer([1]), SubBuffer([2])

    def mutate(a: Buffer, b: Buffer) -> tuple[bool, bool]:
        a.data.append(9)
        b.data.append(9)
        return a is buf, b is sub

    with concur.scope(handoff="strict"):
        assert await concur.call(mutate, buf, sub) == (False, False)
    assert buf.data == [1]
    assert sub.data == [2]


class Resource:
    pass


class Lease:
    def __init__(self) -> None:
        self.closed = False


events: list[str] = []


@concur.handoff.register(Resource)
def _lease(resource: Resource) -> Iterator[Lease]:
    lease = Lease()
    events.append("open")
    try:
        yield lease
    finally:
        lease.closed = True
        events.append(f"close in {threading.current_thread().name}")


async def test_register_generator_rule_cleans_up_after_success_and_error() -> None:
    """A generator rule's code after yield runs once the thread function returned, also on error."""
    loop_thread = threading.current_thread().name

    def use(lease: Lease) -> bool:
        events.append(f"use in {threading.current_thread().name}")
        return lease.closed

    def fail(lease: Lease) -> None:
        events.append("fail")
        raise ValueError("boom")

    events.clear()
    assert await concur.call(use, Resource()) is False
    assert events[0] == "open"
    assert events[1].startswith("use in ")
    assert events[2] == f"close in {events[1].removeprefix('use in ')}"
    assert events[2] != f"close in {loop_thread}"
    events.clear()
    with pytest.raises(ValueError, match="boom"):
        await concur.to_thread(fail, Resource())
    assert events[:2] == ["open", "fail"]
    assert events[2].startswith("close in ")
    events.clear()
    with pytest.raises(ValueError, match="boom"):
        await concur.to_thread(fail, Resource(), abandon_on_cancel=True)
    assert events[:2] == ["open", "fail"]
    assert len(events) == 3


async def test_generator_rule_cleans_up_when_cancelled_before_start() -> None:
    """A call cancelled before its thread starts runs the generator rule's cleanup on the loop."""
    limiter = anyio.CapacityLimiter(1)
    holder = object()
    await limiter.acquire_on_behalf_of(holder)
    loop_thread = threading.current_thread().name
    try:
        for abandon in (False, True):
            events.clear()
            with anyio.CancelScope() as cs:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(
                        functools.partial(
                            concur.to_thread,
                            identity,
                            Resource(),
                            limiter=limiter,
                            abandon_on_cancel=abandon,
                        )
                    )
                    await anyio.wait_all_tasks_blocked()
                    cs.cancel()
            assert cs.cancelled_caught
            assert events == ["open", f"close in {loop_thread}"]
    finally:
        limiter.release_on_behalf_of(holder)


def test_register_refuses_non_class() -> None:
    """register() takes a class; anything else is a TypeError."""
    with pytest.raises(TypeError, match="class"):
        concur.handoff.register(42)  # type: ignore[arg-type]


@attrs.frozen
class Point:
    x: int
    y: int


@attrs.define
class MutablePoint:
    x: int


async def test_frozen_slotted_attrs_pass_as_is() -> None:
    """A frozen slotted attrs instance passes as is under strict; a mutable attrs one is refused."""
    point = Point(1, 2)

    def same(p: object) -> bool:
        return p is point

    with concur.scope(handoff="strict"):
        assert await concur.call(same, point)
        pair = (point, 1)
        assert await concur.call(lambda t: t is pair, pair)  # a tuple of safe values: as is
        with pytest.raises(concur.UnsafeHandoffError, match="MutablePoint"):
            await concur.call(same, MutablePoint(1))


async def test_pyarrow_table_passes_as_is_and_reader_is_unknown() -> None:
    """A pyarrow Table passes as is under strict; a RecordBatchReader is unknown."""
    table = pa.table({"a": [1, 2]})
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches())

    def same(t: object) -> bool:
        return t is table

    with concur.scope(handoff="strict"):
        assert await concur.call(same, table)
        schema = table.schema
        assert await concur.call(lambda s: s is schema, schema)
        with pytest.raises(concur.UnsafeHandoffError, match="RecordBatchReader"):
            await concur.call(same, reader)
    with pytest.warns(concur.UnsafeHandoffWarning, match="RecordBatchReader"):
        await concur.call(same, reader)
    reader.close()


async def test_safe_builtin_values_pass_under_strict() -> None:
    """Primitives, tuples and frozensets of safe values pass as they are under strict."""
    import datetime
    import decimal
    import fractions
    import pathlib
    import uuid

    values: tuple[object, ...] = (
        None,
        True,
        1,
        1.5,
        1j,
        "s",
        b"b",
        range(3),
        pathlib.PurePath("x"),
        datetime.datetime.now(),
        decimal.Decimal(1),
        fractions.Fraction(1, 2),
        uuid.uuid4(),
        (1, ("a", 2.0)),
        frozenset({1, 2}),
    )

    def same(*got: object) -> bool:
        return all(a is b for a, b in zip(got, values, strict=True))

    with concur.scope(handoff="strict"):
        assert await concur.call(same, *values)


def test_import_concur_is_light() -> None:
    """import concur imports no polars, DuckDB, pyarrow or trio."""
    import subprocess
    import sys

    code = (
        "import sys, concur; "
        "print([m for m in ('polars', 'duckdb', 'pyarrow', 'trio') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


# --- where the warning points (issue 10, item 2) ------------------------------------------------


def _line_of(marker: str) -> int:
    source = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(source, 1) if line.rstrip().endswith(marker))


async def test_the_warning_for_a_spawned_sync_task_points_at_the_spawn_line() -> None:
    """A list handed to a spawned sync task warns at the user's spawn() call, not in anyio."""
    with pytest.warns(concur.UnsafeHandoffWarning) as record:
        async with concur.TaskGroup() as tg:
            tg.spawn(len, [1, 2, 3])  # <- spawn line
    (warning,) = record.list
    assert warning.filename == __file__
    assert warning.lineno == _line_of("# <- spawn line")


async def test_the_warning_for_to_thread_call_and_map_points_at_the_users_line() -> None:
    """The same for to_thread and call."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        await concur.to_thread(len, [1])  # <- to_thread line
        await concur.call(len, [1])  # <- call line
    assert [(w.category, w.filename, w.lineno) for w in record] == [
        (concur.UnsafeHandoffWarning, __file__, _line_of("# <- to_thread line")),
        (concur.UnsafeHandoffWarning, __file__, _line_of("# <- call line")),
    ]


async def test_a_spawned_sync_task_cancelled_before_its_thread_runs_its_cleanups() -> None:
    """Handed off at spawn time, a call the group cancels before its thread runs cleans up."""
    limiter = anyio.CapacityLimiter(1)
    loop_thread = threading.current_thread().name
    events.clear()
    # the only token is taken: the spawned call waits for it
    async with limiter, concur.TaskGroup(limiter=limiter) as tg:
        tg.spawn(identity, Resource())
        assert events == ["open"]  # handed off at the spawn() call
        await anyio.wait_all_tasks_blocked()
        tg.cancel()
    assert events == ["open", f"close in {loop_thread}"]


async def test_a_spawn_into_a_finished_group_runs_its_cleanups() -> None:
    """A sync spawn refused by a finished group runs the cleanups it owed at once."""
    events.clear()
    async with concur.TaskGroup() as tg:
        pass
    with pytest.raises(RuntimeError):
        tg.spawn(identity, Resource())
    assert events[0] == "open"
    assert events[1].startswith("close")


# --- concur.handoff.handed: the handoff for helpers of your own --------------------------------


def test_handed_gives_clones_and_cursors_and_closes_cursors_on_leaving() -> None:
    frame = pl.DataFrame({"a": [1, 2, 3]})
    con = duckdb.connect()
    try:
        with concur.handoff.handed(frame, con, 5, policy="strict") as (f, cur, five):
            assert f is not frame  # a clone
            assert f.equals(frame)
            assert cur is not con
            assert cur.execute("select 41 + 1").fetchall() == [(42,)]
            assert five == 5
        with pytest.raises(duckdb.ConnectionException):  # the cursor was closed
            cur.execute("select 1")
        assert con.execute("select 1").fetchall() == [(1,)]  # the connection was not
    finally:
        con.close()


def test_handed_uses_the_ambient_policy_and_checks_its_own() -> None:
    with concur.scope(handoff="strict"), pytest.raises(concur.UnsafeHandoffError):
        concur.handoff.handed([1, 2])
    with pytest.raises(ValueError, match="policy must be"):
        concur.handoff.handed(1, policy="loose")  # type: ignore[arg-type]
