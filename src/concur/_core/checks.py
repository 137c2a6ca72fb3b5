"""Argument checks, written once: every public entry point validates through these.

Each raises ``TypeError`` for a value of the wrong kind and ``ValueError`` for a value
out of range, and names the argument and what would be accepted.
"""

from __future__ import annotations

import functools
import inspect
import math
import types
from typing import Any, cast

__all__ = [
    "check_async_function",
    "check_function",
    "check_int",
    "check_number",
    "check_timeout",
    "fn_name",
    "is_async_callable",
    "is_async_function",
]


def fn_name(fn: object) -> str:
    """A short name for *fn*, for messages and task names (a partial is named after its
    function)."""
    while isinstance(fn, functools.partial):
        fn = fn.func  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return str(name) if name else type(fn).__qualname__


def is_async_callable(fn: object) -> bool:
    """Tell whether calling *fn* returns an awaitable, as far as can be known before.

    Recognises ``async def`` functions, bound methods and ``functools.partial`` objects
    over them, and objects whose ``__call__`` is ``async def``.
    """
    if type(fn) is types.FunctionType:
        return bool(fn.__code__.co_flags & inspect.CO_COROUTINE) or inspect.iscoroutinefunction(fn)
    while True:
        if isinstance(fn, functools.partial):
            fn = fn.func  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        elif isinstance(fn, types.MethodType):
            fn = fn.__func__
        else:
            break
    if inspect.iscoroutinefunction(fn):
        return True
    if not isinstance(fn, (type, types.FunctionType, types.BuiltinFunctionType)):
        dunder = getattr(type(fn), "__call__", None)  # noqa: B004
        if dunder is not None and inspect.iscoroutinefunction(dunder):
            return True
    return False


def is_async_function(fn: object) -> bool:
    """As :func:`is_async_callable`, following ``__wrapped__``: a sync wrapper made with
    ``functools.wraps`` around an async function is async to its callers."""
    if is_async_callable(fn):
        return True
    return hasattr(fn, "__wrapped__") and is_async_callable(inspect.unwrap(cast(Any, fn)))


def check_int(value: object, name: str, *, minimum: int | None = 1) -> int:
    """*value* if it is an ``int`` (not a ``bool``) of at least *minimum* (if not None)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
    return value


def check_number(
    value: object,
    name: str,
    *,
    minimum: float = 0.0,
    strict: bool = False,
    finite: bool = False,
    unit: str = "",
) -> float:
    """*value* as a float if it is a real number (not a ``bool`` or NaN) of at least
    *minimum* (above it when *strict*; not infinite when *finite*); *unit* (``"seconds"``,
    say) goes in the messages."""
    what = f"a number of {unit}" if unit else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    number = float(value)
    if math.isnan(number) or number < minimum or (strict and number == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ValueError(f"{name} must be {bound}{' ' + unit if unit else ''}, got {value!r}")
    if finite and math.isinf(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def check_timeout(value: object, name: str = "timeout") -> None:
    """A timeout is ``None`` (inherit the ambient one) or seconds >= 0 (``math.inf``:
    unbounded)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, got {value!r}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be >= 0 seconds, got {value!r}")


def check_function(
    fn: object, where: str, *, arg: str = "fn", fix: str | None = None, args: str = "..."
) -> None:
    """Refuse a coroutine object (closed, so it never warns "never awaited") or a
    non-callable passed where a function is expected.

    *where* names the call (``"map_async"``), *arg* the parameter; the message shows the
    call to write instead: ``fix(name, args)`` (*fix* defaults to *where*).
    """
    if inspect.iscoroutine(fn):
        name = getattr(fn, "__name__", arg)
        fn.close()  # it will never run
        fix = fix or where
        instead = f"{fix}({name}, {args})" if args else f"{fix}({name})"
        raise TypeError(
            f"{where}() takes a function as {arg}, not a coroutine object: "
            f"write {instead} instead of {fix}({name}(...))"
        )
    if not callable(fn):
        raise TypeError(
            f"{arg} must be callable: {where}() takes a callable, got {type(fn).__name__} {fn!r}"
        )


def check_async_function(fn: object, where: str, *, arg: str = "fn", args: str = "...") -> None:
    """As :func:`check_function`, and refuse a sync function before anything runs it.

    A sync wrapper made with ``functools.wraps`` around an async function passes (its
    ``__wrapped__`` is followed): a decorator that returns its function's coroutine is
    async to its callers.
    """
    check_function(fn, where, arg=arg, args=args)
    if is_async_function(fn):
        return
    name = fn_name(fn)
    raise TypeError(
        f"{where}() takes an async function; {name} is not an async function: "
        f"call it directly, or from async code run it in a thread with "
        f"concur.to_thread({name}, ...)"
    )
