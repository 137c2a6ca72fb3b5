"""Feature generators over polars expressions: lags, rolling statistics, interactions, and
the target's own past (autoregressive features)."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable
from typing import Final, Literal, TypeAlias, final

import attrs
import polars as pl

from ._common import (
    as_ints,
    as_names,
    check_columns,
    check_keys,
    check_name,
    check_number,
    check_windows,
    numeric_columns,
    prefixed,
)
from ._interfaces import SyncFeatureGenerator

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

__all__ = ["AutoregressiveFeatures", "InteractionFeatures", "LagFeatures", "RollingFeatures"]

Stat: TypeAlias = Literal["mean", "std", "min", "max"]
STATS: Final[tuple[Stat, ...]] = ("mean", "std", "min", "max")


def _as_stats(stats: Iterable[Stat]) -> tuple[Stat, ...]:
    return tuple(stats)


def _windowed(expr: pl.Expr, entity: str | None, order: str | None) -> pl.Expr:
    """*expr* evaluated per entity, in *order* (or in row order), row-aligned."""
    if entity is None and order is None:
        return expr
    if entity is None:
        return expr.over(order_by=order)
    return expr.over(entity, order_by=order)


def _rolled(col: pl.Expr, stat: Stat, window: int) -> pl.Expr:
    if stat == "mean":
        return col.rolling_mean(window)
    if stat == "std":
        return col.rolling_std(window)
    if stat == "min":
        return col.rolling_min(window)
    return col.rolling_max(window)


def _select(frame: pl.DataFrame, exprs: list[pl.Expr]) -> pl.DataFrame:
    """The frame of *exprs* over *frame*; with no expressions, ``frame.height`` empty rows."""
    if not exprs:
        return pl.DataFrame(height=frame.height)
    return frame.select(exprs)


def _check_stats(stats: tuple[Stat, ...], owner: str) -> None:
    bad = [s for s in stats if s not in STATS]
    if bad or not stats:
        raise ValueError(f"{owner}: stats must be some of {STATS!r}, got {stats!r}")


@final
@attrs.frozen(kw_only=True)
class LagFeatures(SyncFeatureGenerator):
    """Per-entity lags and differences of numeric columns over an order column.

    For each input column ``c`` and each lag ``n`` it makes ``c_lag_n`` (the value ``n``
    rows earlier in the same entity, in *order*) and, if *differences*, ``c_diff_n``
    (``c - c_lag_n``). The first ``n`` rows of each entity are null.

    Attributes:
        name: the prefix of the output columns.
        columns: the input columns; None means every numeric column but *entity*/*order*.
        lags: the lags, in rows.
        differences: also make the differences.
        entity: the entity column; None means the whole frame is one entity.
        order: the column ordering rows within an entity; None means row order.
    """

    name: str = "lag"
    columns: tuple[str, ...] | None = attrs.field(default=None, converter=as_names)
    lags: tuple[int, ...] = attrs.field(default=(1, 2), converter=as_ints)
    differences: bool = True
    entity: str | None = None
    order: str | None = None

    def __attrs_post_init__(self) -> None:
        check_name(self.name, "LagFeatures")
        check_columns(self.columns, "LagFeatures")
        check_windows(self.lags, "lags", "LagFeatures")

    @override
    def generate(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Compute the lags and differences (blocking; polars runs it multi-threaded).

        Raises:
            ValueError: a named column is missing or not numeric.
        """
        inputs = numeric_columns(frame, self.columns, self.entity, self.order, "LagFeatures")
        exprs: list[pl.Expr] = []
        for column, lag in itertools.product(inputs, self.lags):
            shifted = _windowed(pl.col(column).cast(pl.Float64).shift(lag), self.entity, self.order)
            exprs.append(shifted.alias(prefixed(self.name, f"{column}_lag_{lag}")))
            if self.differences:
                diff = pl.col(column).cast(pl.Float64) - shifted
                exprs.append(diff.alias(prefixed(self.name, f"{column}_diff_{lag}")))
        return _select(frame, exprs)


@final
@attrs.frozen(kw_only=True)
class RollingFeatures(SyncFeatureGenerator):
    """Per-entity rolling mean, standard deviation, minimum and maximum over windows.

    For each input column ``c``, window ``w`` and statistic ``s`` it makes ``c_s_w``: the
    statistic over the ``w`` rows ending at the current one, within the entity, in
    *order*. Rows with fewer than ``w`` values behind them are null.

    Attributes:
        name: the prefix of the output columns.
        columns: the input columns; None means every numeric column but *entity*/*order*.
        windows: the window sizes, in rows.
        stats: which of ``"mean"``, ``"std"``, ``"min"``, ``"max"`` to compute.
        entity: the entity column; None means the whole frame is one entity.
        order: the column ordering rows within an entity; None means row order.
    """

    name: str = "rolling"
    columns: tuple[str, ...] | None = attrs.field(default=None, converter=as_names)
    windows: tuple[int, ...] = attrs.field(default=(3, 7), converter=as_ints)
    stats: tuple[Stat, ...] = attrs.field(default=STATS, converter=_as_stats)
    entity: str | None = None
    order: str | None = None

    def __attrs_post_init__(self) -> None:
        check_name(self.name, "RollingFeatures")
        check_columns(self.columns, "RollingFeatures")
        check_windows(self.windows, "windows", "RollingFeatures")
        _check_stats(self.stats, "RollingFeatures")

    @override
    def generate(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Compute the rolling statistics (blocking; polars runs it multi-threaded).

        Raises:
            ValueError: a named column is missing or not numeric.
        """
        inputs = numeric_columns(frame, self.columns, self.entity, self.order, "RollingFeatures")
        exprs: list[pl.Expr] = []
        for column, window, stat in itertools.product(inputs, self.windows, self.stats):
            rolled = _rolled(pl.col(column).cast(pl.Float64), stat, window)
            expr = _windowed(rolled, self.entity, self.order)
            exprs.append(expr.alias(prefixed(self.name, f"{column}_{stat}_{window}")))
        return _select(frame, exprs)


@final
@attrs.frozen(kw_only=True)
class InteractionFeatures(SyncFeatureGenerator):
    """Pairwise products and ratios of numeric columns.

    For each pair of input columns ``a``, ``b`` (``a`` before ``b``) it makes ``a_mul_b``
    and ``a_div_b``. A ratio is null where ``|b| <= epsilon`` (no division by zero, no
    infinities).

    Attributes:
        name: the prefix of the output columns.
        columns: the input columns; None means every numeric column but *entity*/*order*.
        products: make the products.
        ratios: make the ratios.
        epsilon: denominators at most this large in absolute value give null.
        entity: a column never used as an input (the entity key).
        order: a column never used as an input (the order key).
    """

    name: str = "interaction"
    columns: tuple[str, ...] | None = attrs.field(default=None, converter=as_names)
    products: bool = True
    ratios: bool = True
    epsilon: float = 1e-12
    entity: str | None = None
    order: str | None = None

    def __attrs_post_init__(self) -> None:
        check_name(self.name, "InteractionFeatures")
        check_columns(self.columns, "InteractionFeatures")
        if not (self.products or self.ratios):
            raise ValueError("InteractionFeatures: products and ratios are both off")
        check_number(self.epsilon, "InteractionFeatures: epsilon", field=True)

    @override
    def generate(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Compute the products and ratios (blocking; polars runs it multi-threaded).

        Raises:
            ValueError: a named column is missing or not numeric.
        """
        inputs = numeric_columns(
            frame, self.columns, self.entity, self.order, "InteractionFeatures"
        )
        exprs: list[pl.Expr] = []
        for left, right in itertools.combinations(inputs, 2):
            a = pl.col(left).cast(pl.Float64)
            b = pl.col(right).cast(pl.Float64)
            if self.products:
                exprs.append((a * b).alias(prefixed(self.name, f"{left}_mul_{right}")))
            if self.ratios:
                ratio = pl.when(b.abs() > self.epsilon).then(a / b).otherwise(None)
                exprs.append(ratio.alias(prefixed(self.name, f"{left}_div_{right}")))
        return _select(frame, exprs)


@final
@attrs.frozen(kw_only=True)
class AutoregressiveFeatures(SyncFeatureGenerator):
    """The target's own past: its lags and rolling statistics, strictly before each row.

    For the *target* column ``y`` it makes, per entity in *order*, ``y_lag_n`` for each lag
    ``n`` (the value ``n`` rows earlier) and ``y_s_w`` for each window ``w`` and statistic
    ``s`` (the statistic over the ``w`` rows just before the current one: rows ``t - w`` to
    ``t - 1``). No feature at a row depends on that row's target or on a later row's, so
    they predict the target without leakage. Rows with fewer than ``n`` (or ``w``) earlier
    rows in their entity are null.

    The target never reaches the other generators: :func:`select_best_features` hands
    them the frame without it. This class is the one exception: when its *target* is the
    run's target, the runner hands it the frame with that column, since its features are
    the target's past. (It is final, so no subclass can use the exception to read the
    current row.) Outside the runner, ``generate`` works on any frame with *target* in it.

    Within an entity, the *order* values must be unique: two rows at the same step would
    each see the other's target, which is not the past. The command line turns this
    generator on with ``--autoregressive``, and by itself for a file whose only numeric
    column is the target (a price series, say).

    Attributes:
        target: the column whose past makes the features (numeric or boolean).
        name: the prefix of the output columns.
        lags: the lags, in rows.
        windows: the window sizes, in rows.
        stats: which of ``"mean"``, ``"std"``, ``"min"``, ``"max"`` to compute per window.
        entity: the entity column; None means the whole frame is one entity.
        order: the column ordering rows within an entity; None means row order.
    """

    target: str
    name: str = "autoregressive"
    lags: tuple[int, ...] = attrs.field(default=(1, 2, 3), converter=as_ints)
    windows: tuple[int, ...] = attrs.field(default=(3, 7), converter=as_ints)
    stats: tuple[Stat, ...] = attrs.field(default=STATS, converter=_as_stats)
    entity: str | None = None
    order: str | None = None

    def __attrs_post_init__(self) -> None:
        owner = "AutoregressiveFeatures"
        check_name(self.name, owner)
        if not isinstance(self.target, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"{owner}: target must be a column name (str), got {self.target!r}")
        if not self.target:
            raise ValueError(f"{owner}: target must not be empty")
        check_windows(self.lags, "lags", owner)
        check_windows(self.windows, "windows", owner)
        _check_stats(self.stats, owner)
        for what, column in (("entity", self.entity), ("order", self.order)):
            if column == self.target:
                raise ValueError(f"{owner}: the {what} column cannot be the target {column!r}")

    @override
    def generate(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Compute the target's lags and rolling statistics (blocking; polars runs it
        multi-threaded).

        Raises:
            ValueError: the target, entity or order column is missing, the target is not
                numeric, or two rows of an entity share an order value.
        """
        owner = "AutoregressiveFeatures"
        check_keys(frame, self.entity, self.order, owner)
        if self.target not in frame.columns:
            raise ValueError(f"{owner}: target column {self.target!r} is not in the frame")
        dtype = frame.schema[self.target]
        if not (dtype.is_numeric() or dtype == pl.Boolean):
            raise ValueError(f"{owner}: target column {self.target!r} is {dtype}, not numeric")
        self._check_steps(frame)
        y = pl.col(self.target).cast(pl.Float64)
        exprs = [
            _windowed(y.shift(lag), self.entity, self.order).alias(
                prefixed(self.name, f"{self.target}_lag_{lag}")
            )
            for lag in self.lags
        ]
        # shift(1) first: the window ending at t - 1, so row t's own value is never in it
        past = y.shift(1)
        for window, stat in itertools.product(self.windows, self.stats):
            rolled = _windowed(_rolled(past, stat, window), self.entity, self.order)
            exprs.append(rolled.alias(prefixed(self.name, f"{self.target}_{stat}_{window}")))
        return frame.select(exprs)

    def _check_steps(self, frame: pl.DataFrame) -> None:
        if self.order is None:
            return  # row order: every row is a step of its own
        keys = [c for c in (self.entity, self.order) if c is not None]
        clash = frame.select(pl.struct(keys).is_duplicated().alias("clash")).to_series()
        if clash.any():
            example = frame.filter(clash).row(0, named=True)
            where = ", ".join(f"{key}={example[key]!r}" for key in keys)
            raise ValueError(
                f"AutoregressiveFeatures: {clash.sum()} rows share their step with another row "
                f"of the same entity (e.g. {where}); the target's past needs one row per "
                f"{self.order!r} value per entity"
            )
