"""The built-in, seeded data set: entities over time, noise, and a planted target."""

from __future__ import annotations

import importlib
import math
from typing import Any, Final

import polars as pl

from ._common import check_int

__all__ = ["DEFAULT_ROWS", "MAX_SEED", "PLANTED_FEATURES", "TARGET", "make_dataset"]

DEFAULT_ROWS: Final = 100_000
"""The size of the built-in data set the command line uses: ``concur features`` on it takes
about a second on two cores, start-up included (``--rows`` for more; the benchmarks use
1,000,000)."""

TARGET: Final = "target"
"""The name of the built-in data set's target column."""

MAX_SEED: Final = 2**32 - 1
"""The largest seed :func:`make_dataset` takes."""

PLANTED_FEATURES: Final = (
    "lag__x1_lag_1",
    "rolling__x2_mean_7",
    "interaction__x3_mul_x4",
)
"""The features the built-in target is made of, as the default generators name them."""


def _uniform(rows: int, seed: int) -> pl.Series:
    pc: Any = importlib.import_module("pyarrow.compute")  # untyped: keep it Any
    return pl.Series(pc.random(rows, initializer=seed))


def _normal(rows: int, seed: int, name: str) -> pl.Series:
    # Box-Muller over two seeded uniform streams (1 - u lies in (0, 1], so the log is finite)
    u1 = _uniform(rows, seed * 2 + 1)
    u2 = _uniform(rows, seed * 2 + 2)
    frame = pl.DataFrame({"u1": u1, "u2": u2})
    z = frame.select(
        ((-2.0 * (1.0 - pl.col("u1")).log()).sqrt() * (2.0 * math.pi * pl.col("u2")).cos()).alias(
            name
        )
    )
    return z.to_series()


def make_dataset(
    rows: int = DEFAULT_ROWS, *, entities: int | None = None, seed: int = 0
) -> pl.DataFrame:
    """Generate the built-in data set: deterministic for a given *rows*, *entities*, *seed*.

    Columns: ``entity`` (Int32), ``order`` (Int32, the time step within the entity),
    ``x1`` ... ``x4`` and ``noise1``, ``noise2`` (independent standard normals), and
    ``target``. Rows are in time order, entities interleaved, so per-entity features need
    the ``entity`` and ``order`` columns. The target is::

        2 * lag_1(x1) + 2 * sqrt(7) * rolling_mean_7(x2) + 2 * x3 * x4 + 0.5 * noise

    per entity in order (a missing lag or window counts as 0): the three planted features
    (:data:`PLANTED_FEATURES`) each explain about a third of its variance, and nothing else
    does.

    Args:
        rows: the number of rows (at least 1).
        entities: the number of entities; default ``max(1, rows // 1000)``.
        seed: the random seed, from 0 to 2**32 - 1.

    Raises:
        TypeError: *rows*, *entities* or *seed* is not an int.
        ValueError: *rows* or *entities* is less than 1, or *seed* is out of range.
    """
    check_int(rows, "make_dataset: rows")
    check_int(entities, "make_dataset: entities", optional=True)
    check_int(seed, "make_dataset: seed", minimum=0)
    if seed > MAX_SEED:
        raise ValueError(f"make_dataset: seed must be between 0 and {MAX_SEED}, got {seed}")
    if entities is None:
        entities = max(1, rows // 1000)
    base = ("x1", "x2", "x3", "x4", "noise1", "noise2")
    columns = [_normal(rows, seed * 16 + i, name) for i, name in enumerate(base)]
    epsilon = _normal(rows, seed * 16 + len(base), "epsilon")
    frame = pl.DataFrame([*columns, epsilon]).with_row_index("row")
    frame = frame.select(
        (pl.col("row") % entities).cast(pl.Int32).alias("entity"),
        (pl.col("row") // entities).cast(pl.Int32).alias("order"),
        *base,
        "epsilon",
    )
    lag = pl.col("x1").shift(1).over("entity", order_by="order").fill_null(0.0)
    rolling = pl.col("x2").rolling_mean(7).over("entity", order_by="order").fill_null(0.0)
    target = 2 * lag + 2 * math.sqrt(7) * rolling + 2 * pl.col("x3") * pl.col("x4")
    target = target + 0.5 * pl.col("epsilon")
    return frame.with_columns(target.alias(TARGET)).drop("epsilon")
