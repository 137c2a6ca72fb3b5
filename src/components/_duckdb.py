"""A feature generator written in DuckDB SQL: window aggregates over the frame."""

from __future__ import annotations

import sys
from typing import Final, final

import attrs
import duckdb
import polars as pl

import concur

from ._common import (
    as_names,
    check_columns,
    check_int,
    check_name,
    field_check,
    numeric_columns,
    prefixed,
)
from ._interfaces import SyncFeatureGenerator

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

__all__ = ["SQLWindowFeatures"]

_VIEW: Final = "concur_frame"
_ROW: Final = "__concur_row"
_SUFFIXES: Final = ("cummean", "demeaned", "zscore")


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@final
@attrs.frozen(kw_only=True)
class SQLWindowFeatures(SyncFeatureGenerator):
    """Window aggregates computed in DuckDB SQL.

    For each input column ``c`` it makes, within each entity, in *order*:

    - ``c_cummean``: the mean of ``c`` over the rows so far, the current one included;
    - ``c_demeaned``: ``c`` minus the mean of ``c`` over the entity's earlier rows (null on
      its first row);
    - ``c_zscore``: ``c_demeaned`` divided by the sample standard deviation of ``c`` over
      the entity's earlier rows (null where that is 0 or undefined: before its third row).

    Every value uses only the current row and the rows before it in the same entity,
    never a later one, so a feature is known when its row is: what a forecast may use.
    Rows with equal *order* values are taken in row order.

    Each call opens its own cursor of :attr:`connection` (a separate DuckDB connection to
    the same database), registers the frame on it, runs the query, materialises the result
    as a polars frame and closes the cursor, whatever the outcome. So several calls,
    from several threads, run in parallel on one generator.

    Attributes:
        name: the prefix of the output columns.
        connection: the DuckDB connection whose cursors run the queries; by default a
            fresh in-memory database, owned by the generator (close it with :meth:`close`
            or ``with``).
        columns: the input columns; None means every numeric column but *entity*/*order*.
        entity: the entity column; None means the whole frame is one entity.
        order: the column ordering rows within an entity; None means row order.
        threads: DuckDB's ``threads`` setting, applied on the cursor before each query.
            DuckDB settings belong to the database, so this changes it for every user of
            *connection*; None leaves it as it is (DuckDB's default: all cores).
    """

    name: str = "sql"
    connection: duckdb.DuckDBPyConnection = attrs.field(
        factory=duckdb.connect, eq=False, repr=False
    )
    columns: tuple[str, ...] | None = attrs.field(default=None, converter=as_names)
    entity: str | None = None
    order: str | None = None
    threads: int | None = attrs.field(
        default=None, validator=field_check(check_int, "SQLWindowFeatures", optional=True)
    )

    def __attrs_post_init__(self) -> None:
        check_name(self.name, "SQLWindowFeatures")
        check_columns(self.columns, "SQLWindowFeatures")
        if not isinstance(self.connection, duckdb.DuckDBPyConnection):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(
                "SQLWindowFeatures: connection must be a duckdb.DuckDBPyConnection, got "
                f"{type(self.connection).__name__}"
            )

    def query(self, inputs: list[str]) -> str:
        """The SQL this generator runs over the view of the frame, for these input columns."""
        partition = f"PARTITION BY {_quote(self.entity)}" if self.entity is not None else ""
        order_keys = [_quote(self.order)] if self.order is not None else []
        order_keys.append(_quote(_ROW))
        ordered = f"{partition} ORDER BY {', '.join(order_keys)}"
        # expanding windows only: a feature never sees a later row of its entity
        so_far = f"OVER ({ordered} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
        before = f"OVER ({ordered} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"
        selects: list[str] = []
        for column in inputs:
            c = f"CAST({_quote(column)} AS DOUBLE)"
            mean = f"avg({c}) {before}"
            std = f"stddev_samp({c}) {before}"
            out = {s: _quote(prefixed(self.name, f"{column}_{s}")) for s in _SUFFIXES}
            selects.append(f"avg({c}) {so_far} AS {out['cummean']}")
            selects.append(f"{c} - {mean} AS {out['demeaned']}")
            selects.append(f"({c} - {mean}) / nullif({std}, 0) AS {out['zscore']}")
        return f"SELECT {', '.join(selects)} FROM {_VIEW} ORDER BY {_quote(_ROW)}"

    @override
    def generate(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Run the window query on a fresh cursor and return the result (blocking).

        Raises:
            ValueError: a named column is missing or not numeric.
            duckdb.Error: the query failed.
        """
        inputs = numeric_columns(frame, self.columns, self.entity, self.order, "SQLWindowFeatures")
        if not inputs:
            return pl.DataFrame(height=frame.height)
        keys = [c for c in (self.entity, self.order) if c is not None]
        view = frame.select([*dict.fromkeys([*keys, *inputs])]).with_row_index(_ROW)
        cursor = self.connection.cursor()
        try:
            # a cancelled call (fail-fast, a timeout) interrupts the running query at once
            with concur.interrupt_with(cursor.interrupt):
                if self.threads is not None:
                    cursor.execute(f"SET threads = {int(self.threads)}")
                cursor.register(_VIEW, view)
                result: pl.DataFrame = cursor.sql(self.query(inputs)).pl()
        finally:
            cursor.close()
        return result

    def close(self) -> None:
        """Close :attr:`connection` (also one you passed in); later calls fail."""
        self.connection.close()

    def __enter__(self) -> SQLWindowFeatures:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
