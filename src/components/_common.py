"""Helpers shared by the components: argument checks and column choice."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NoReturn, TypeVar, cast

import concur

if TYPE_CHECKING:
    import polars as pl

T = TypeVar("T")

__all__ = [
    "as_ints",
    "as_names",
    "as_tuple",
    "check_columns",
    "check_keys",
    "check_name",
    "check_windows",
    "numeric_columns",
    "prefixed",
    "raise_single",
]


def as_names(value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """Convert a ``columns``-like field: None, one name, or names, to a tuple or None."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    names = tuple(value) if isinstance(value, Iterable) else None  # pyright: ignore[reportUnnecessaryIsInstance]
    if names is None or not all(isinstance(n, str) for n in names):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"expected None, a column name or column names (str), got {value!r}")
    return names


def as_ints(value: int | Iterable[int]) -> tuple[int, ...]:
    """Convert a ``lags``-like field: one int or ints, to a tuple (checked later)."""
    if isinstance(value, int):
        return (value,)
    if isinstance(value, Iterable) and not isinstance(value, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        return tuple(value)
    return (cast(int, value),)  # not an int: check_windows names the field in its error


def as_tuple(values: Iterable[T]) -> tuple[T, ...]:
    """Convert any iterable field to a tuple (a typed ``tuple`` converter)."""
    return tuple(values)


def check_name(name: object, owner: str) -> None:
    """Raise for a component ``name`` that is not a non-empty string."""
    if not isinstance(name, str):
        raise TypeError(f"{owner}: name must be a str, got {type(name).__name__}")
    if not name:
        raise ValueError(f"{owner}: name must not be empty")


def check_columns(columns: tuple[str, ...] | None, owner: str) -> None:
    """Raise for a ``columns`` field that is not None or a tuple of strings."""
    if columns is None:
        return
    if not all(isinstance(c, str) for c in columns):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"{owner}: columns must be column names (str), got {columns!r}")


def check_windows(values: tuple[int, ...], what: str, owner: str) -> None:
    """Raise unless *values* is a non-empty tuple of positive ints."""
    if not values:
        raise ValueError(f"{owner}: {what} must not be empty")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"{owner}: {what} must be positive ints, got {values!r}")


def numeric_columns(
    frame: pl.DataFrame,
    columns: tuple[str, ...] | None,
    exclude: Iterable[str | None],
    owner: str,
) -> list[str]:
    """The input columns of a generator: *columns*, or every numeric column not excluded.

    Raises:
        ValueError: a named column is missing or not numeric.
    """
    skip = {c for c in exclude if c is not None}
    if columns is None:
        return [
            name
            for name, dtype in frame.schema.items()
            if name not in skip and (dtype.is_numeric() and not dtype.is_decimal())
        ]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{owner}: columns {missing!r} are not in the frame")
    bad = [c for c in columns if not frame.schema[c].is_numeric()]
    if bad:
        raise ValueError(f"{owner}: columns {bad!r} are not numeric")
    return list(columns)


def check_keys(frame: pl.DataFrame, entity: str | None, order: str | None, owner: str) -> None:
    """Raise if the *entity* or *order* column is missing from *frame*."""
    for what, col in (("entity", entity), ("order", order)):
        if col is not None and col not in frame.columns:
            raise ValueError(f"{owner}: {what} column {col!r} is not in the frame")


def prefixed(name: str, column: str) -> str:
    """The full name of a generator's feature column."""
    return f"{name}__{column}"


def raise_single(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise what concur's error rule makes of *group* (see :func:`concur.collapse`)."""
    raise concur.collapse(group)
