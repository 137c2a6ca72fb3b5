"""The DuckDB generator: window aggregates in SQL, one cursor per call."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator

import duckdb
import polars as pl
import pytest

import concur
from components import SQLWindowFeatures


@pytest.fixture
def connection() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    try:
        yield con
    finally:
        con.close()


def _frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "entity": [1, 2, 1, 2, 1, 2],
            "t": [2, 1, 0, 0, 1, 2],
            "x": [3.0, 20.0, 1.0, 10.0, 2.0, 30.0],
            "const": [5, 5, 5, 5, 5, 5],
        }
    )


def test_window_features_per_entity_are_row_aligned(connection: duckdb.DuckDBPyConnection) -> None:
    """Expanding mean, demeaned value and z-score come back in the input's row order."""
    gen = SQLWindowFeatures(connection=connection, entity="entity", order="t")
    out = gen.generate(_frame())
    assert isinstance(out, pl.DataFrame)
    # rows: (1, t2), (2, t1), (1, t0), (2, t0), (1, t1), (2, t2); x is 1, 2, 3 and 10, 20, 30
    assert out["sql__x_cummean"].to_list() == [2.0, 15.0, 1.0, 10.0, 1.5, 20.0]
    # x minus the mean of the entity's earlier rows: none on its first row
    assert out["sql__x_demeaned"].to_list() == [1.5, 10.0, None, None, 1.0, 15.0]
    # divided by the standard deviation of the earlier rows: defined from the third row on
    root_half = math.sqrt(0.5)
    assert out["sql__x_zscore"].to_list() == pytest.approx(
        [1.5 / root_half, None, None, None, None, 15.0 / (10 * root_half)]
    )
    # a constant column has no spread: its z-score is null, not a division by zero
    assert out["sql__const_zscore"].to_list() == [None] * 6
    assert out["sql__const_demeaned"].to_list() == [0.0, 0.0, None, None, 0.0, 0.0]
    assert out.height == 6


def test_window_statistics_are_expanding_over_the_earlier_rows(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    """demeaned and zscore use the mean and standard deviation of the rows before each one."""
    values = [4.0, -1.0, 2.5, 8.0, 0.5, 3.0, -2.0]
    out = SQLWindowFeatures(connection=connection, columns="x").generate(
        pl.DataFrame({"x": values})
    )
    for i, value in enumerate(values):
        earlier = values[:i]
        demeaned = value - statistics.fmean(earlier) if earlier else None
        zscore = demeaned / statistics.stdev(earlier) if len(earlier) >= 2 else None
        assert out["sql__x_demeaned"][i] == pytest.approx(demeaned, rel=1e-12)
        assert out["sql__x_zscore"][i] == pytest.approx(zscore, rel=1e-12)


def test_without_entity_the_frame_is_one_series_in_row_order(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    """With no entity and no order, the expanding mean runs down the rows as given."""
    gen = SQLWindowFeatures(connection=connection, columns="x")
    out = gen.generate(pl.DataFrame({"x": [4.0, 2.0, 0.0]}))
    assert out["sql__x_cummean"].to_list() == [4.0, 3.0, 2.0]
    assert out.columns == ["sql__x_cummean", "sql__x_demeaned", "sql__x_zscore"]


def test_default_generator_owns_an_in_memory_connection() -> None:
    """Constructed with no arguments it has its own connection, closed by ``with``."""
    with SQLWindowFeatures() as gen:
        assert gen.name == "sql"
        out = gen.generate(pl.DataFrame({"x": [1.0, 3.0]}))
        assert out["sql__x_demeaned"].to_list() == [None, 2.0]
    with pytest.raises(duckdb.Error):
        gen.connection.execute("SELECT 1")


def test_calls_leave_nothing_registered_on_the_connection(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    """The frame is registered on the call's own cursor, which is gone after the call."""
    gen = SQLWindowFeatures(connection=connection)
    gen.generate(pl.DataFrame({"x": [1.0, 2.0]}))
    views = connection.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal")
    assert views.fetchall() == []


async def test_concurrent_calls_share_one_connection(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    """Several threads run the same generator at once on one connection, each on a cursor."""
    gen = SQLWindowFeatures(connection=connection, entity="entity", order="t")
    frame = _frame()
    results: list[pl.DataFrame] = []

    async def one() -> None:
        results.append(await gen.agenerate(frame))

    async with concur.TaskGroup(thread_limit=4) as tg:
        for _ in range(8):
            tg.spawn(one)
    assert len(results) == 8
    assert all(r.equals(results[0]) for r in results)
    # the caller's connection is still free for its own queries
    assert connection.execute("SELECT 42").fetchall() == [(42,)]


def test_errors_propagate_and_the_generator_goes_on(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    """A refused input raises before any SQL runs; later calls still work, NaN included."""
    with pytest.raises(ValueError, match="not numeric"):
        SQLWindowFeatures(connection=connection, columns="s").generate(pl.DataFrame({"s": ["a"]}))
    out = SQLWindowFeatures(connection=connection, threads=1).generate(
        pl.DataFrame({"x": [1.0, math.nan]})
    )
    assert out.height == 2


def test_a_closed_connection_raises_duckdbs_error() -> None:
    """Using a generator whose connection was closed raises duckdb.Error."""
    gen = SQLWindowFeatures()
    gen.close()
    with pytest.raises(duckdb.Error):
        gen.generate(pl.DataFrame({"x": [1.0]}))


def test_bad_configuration_raises(connection: duckdb.DuckDBPyConnection) -> None:
    """A non-connection or a bad thread count raises a clear error."""
    with pytest.raises(TypeError, match="connection"):
        SQLWindowFeatures(connection="memory")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threads"):
        SQLWindowFeatures(threads=0, connection=connection)
