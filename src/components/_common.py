"""Helpers shared by the components: argument checks and column choice.

The int and number checks of every component are here, written once: :func:`is_int` and
:func:`is_number` (an ``int`` or ``float``, never a ``bool``), and :func:`check_int` and
:func:`check_number` built on them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar, cast

import attrs

if TYPE_CHECKING:
    import polars as pl

T = TypeVar("T")

__all__ = [
    "Validator",
    "as_ints",
    "as_names",
    "as_tuple",
    "check_columns",
    "check_int",
    "check_keys",
    "check_name",
    "check_number",
    "check_windows",
    "field_check",
    "is_int",
    "is_number",
    "numeric_columns",
    "prefixed",
]


def is_int(value: object) -> TypeGuard[int]:
    """Whether *value* is an ``int`` (a ``bool`` is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """Whether *value* is an ``int`` or a ``float`` (a ``bool`` is not; NaN is)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(
    value: object, name: str, *, minimum: int = 1, optional: bool = False, field: bool = False
) -> None:
    """Raise unless *value* is an int of at least *minimum* (or None, if *optional*).

    *name* names the argument in the message (``"k"``, ``"HttpLookupFeatures: retries"``).
    An argument raises ``TypeError`` for a value that is not an int and ``ValueError`` for
    one below *minimum*; a *field* of a component raises ``ValueError`` for both, as every
    field validator of components does (attrs runs them when the object is made).
    """
    if value is None and optional:
        return
    if is_int(value) and value >= minimum:
        return
    none = " or None" if optional else ""
    if field:
        raise ValueError(f"{name} must be an int >= {minimum}{none}, got {value!r}")
    if not is_int(value):
        raise TypeError(f"{name} must be an int{none}, got {type(value).__name__} {value!r}")
    raise ValueError(f"{name} must be at least {minimum}, got {value!r}")


def check_number(
    value: object,
    name: str,
    *,
    minimum: float = 0.0,
    strict: bool = False,
    optional: bool = False,
    field: bool = False,
    unit: str = "",
) -> None:
    """Raise unless *value* is a number (not NaN) of at least *minimum*, above it if
    *strict* (or None, if *optional*); infinity passes. *unit* (``"seconds"``) goes in the
    message; *name* and *field* are as for :func:`check_int`."""
    if value is None and optional:
        return
    if is_number(value) and (value > minimum or (value == minimum and not strict)):
        return  # NaN compares False, so it falls through
    none = " or None" if optional else ""
    units = f" {unit}" if unit else ""
    if not field and not is_number(value):
        what = f"a number of {unit}" if unit else "a number"
        raise TypeError(f"{name} must be {what}{none}, got {type(value).__name__} {value!r}")
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    raise ValueError(f"{name} must be {bound}{units}{none}, got {value!r}")


Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]
"""An attrs field validator."""


def field_check(check: Callable[..., None], owner: str, **options: Any) -> Validator:
    """An attrs validator that runs ``check(value, f"{owner}: {field}", field=True,
    **options)``: ``field_check(check_int, "LagFeatures", minimum=0)``."""

    def validate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        check(value, f"{owner}: {attribute.name}", field=True, **options)

    return validate


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
        if not is_int(value) or value < 1:
            raise ValueError(f"{owner}: {what} must be positive ints, got {values!r}")


def numeric_columns(
    frame: pl.DataFrame,
    columns: tuple[str, ...] | None,
    entity: str | None,
    order: str | None,
    owner: str,
) -> list[str]:
    """The input columns of a generator: *columns*, or every numeric column but the
    *entity* and *order* keys, after checking that the keys are in *frame*.

    Raises:
        ValueError: a key column or a named column is missing, or a named column is not
            numeric.
    """
    check_keys(frame, entity, order, owner)
    if columns is None:
        return [
            name
            for name, dtype in frame.schema.items()
            if name not in (entity, order) and (dtype.is_numeric() and not dtype.is_decimal())
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
