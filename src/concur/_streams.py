"""The stream operators that run no task: plain async iterators over a source.

``throttle``, ``take``, ``skip``, ``filter`` and ``enumerate`` return a
:class:`ClosingAsyncIterator`, which closes its source when it is closed or
exhausted. The operators that need background tasks are in :mod:`concur._stream_blocks`.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Generic, Self, TypeVar, cast, final

import anyio.lowlevel

from ._core import check_function, check_int, is_async_callable
from ._core.closing import aclose_bounded
from ._ratelimit import RateLimiter, check_rate

__all__ = [
    "ClosingAsyncIterator",
    "aiter_of",
    "check_source",
    "enumerate",
    "filter",
    "skip",
    "take",
    "throttle",
]

T = TypeVar("T")


# --- sources ----------------------------------------------------------------------------------


def check_source(source: object, where: str = "source") -> None:
    if not isinstance(source, (AsyncIterable, Iterable)):
        raise TypeError(
            f"{where} must be an async iterable or an iterable, got {type(source).__name__}"
        )


@final
class _SyncSource(Generic[T]):
    """A plain iterable seen as an async iterator (``aclose()`` closes a generator)."""

    __slots__ = ("_it",)

    def __init__(self, items: Iterable[T]) -> None:
        self._it = iter(items)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        await anyio.lowlevel.checkpoint()
        try:
            return next(self._it)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        if inspect.isgenerator(self._it):
            self._it.close()


def aiter_of(source: AsyncIterable[T] | Iterable[T]) -> AsyncIterator[T]:
    if isinstance(source, AsyncIterable):
        return aiter(source)
    return _SyncSource(source)


# --- plain async iterators --------------------------------------------------------------------


class ClosingAsyncIterator(AsyncIterator[T]):
    """An async iterator that closes its source when it is closed or exhausted.

    Returned by :func:`throttle`, :func:`take`, :func:`skip`, :func:`filter` and
    :func:`enumerate`. It runs no task. A bare ``break`` out of ``async for`` leaves it
    (and its source) open until garbage collection, so iterate it inside
    ``async with contextlib.aclosing(...)`` to close everything at once.

    Cancellation: cancelling an ``anext()`` cancels the source's ``anext()`` it waits on
    (an async generator source usually ends there); ``aclose()`` still closes the source.
    """

    __slots__ = ("_done", "_source")

    def __init__(self, source: AsyncIterable[Any] | Iterable[Any]) -> None:
        check_source(source)
        self._source: AsyncIterator[Any] | None = aiter_of(source)
        self._done = False

    async def _next(self) -> Any:
        """The next item of the source; on its end, close it and stop."""
        source = self._source
        if source is None:
            raise StopAsyncIteration
        try:
            return await anext(source)
        except StopAsyncIteration:
            await self.aclose()
            raise

    async def _finish(self) -> None:
        await self.aclose()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Close the source (``aclose()``, shielded, for at most 5 seconds). Idempotent."""
        if self._done:
            return
        self._done = True
        source, self._source = self._source, None
        if source is not None:
            await aclose_bounded(source)


@final
class _Throttle(ClosingAsyncIterator[T]):
    __slots__ = ("_rate",)

    def __init__(self, source: AsyncIterable[T] | Iterable[T], rate: RateLimiter) -> None:
        super().__init__(source)
        self._rate = rate

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        item = await self._next()
        await self._rate.acquire()
        return cast(T, item)


@final
class _Take(ClosingAsyncIterator[T]):
    __slots__ = ("_left",)

    def __init__(self, source: AsyncIterable[T] | Iterable[T], n: int) -> None:
        super().__init__(source)
        self._left = n

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        if self._left <= 0:
            await self._finish()
        item = await self._next()
        self._left -= 1
        if self._left == 0:
            await self.aclose()  # the source is not needed any more
        return cast(T, item)


@final
class _Skip(ClosingAsyncIterator[T]):
    __slots__ = ("_skip",)

    def __init__(self, source: AsyncIterable[T] | Iterable[T], n: int) -> None:
        super().__init__(source)
        self._skip = n

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        while self._skip > 0:
            await self._next()
            self._skip -= 1
        return cast(T, await self._next())


@final
class _Filter(ClosingAsyncIterator[T]):
    __slots__ = ("_is_async", "_pred")

    def __init__(
        self,
        source: AsyncIterable[T] | Iterable[T],
        pred: Callable[[T], Awaitable[object]] | Callable[[T], object],
    ) -> None:
        check_function(pred, "filter", arg="pred")
        super().__init__(source)
        self._pred = pred
        self._is_async = is_async_callable(pred)

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        pred = self._pred
        while True:
            item = cast(T, await self._next())
            keep = pred(item)
            if self._is_async or inspect.isawaitable(keep):
                keep = await cast("Awaitable[object]", keep)
            if keep:
                return item


@final
class _Enumerate(ClosingAsyncIterator[tuple[int, T]]):
    __slots__ = ("_i",)

    def __init__(self, source: AsyncIterable[T] | Iterable[T], start: int) -> None:
        check_int(start, "start", minimum=None)
        super().__init__(source)
        self._i = start

    async def __anext__(self) -> tuple[int, T]:
        if self._done:
            raise StopAsyncIteration
        item = cast(T, await self._next())
        i = self._i
        self._i = i + 1
        return i, item


def throttle(
    source: AsyncIterable[T] | Iterable[T], per_second: float, *, burst: int = 1
) -> ClosingAsyncIterator[T]:
    """Pass the items of *source* on at most *per_second* a second (bursts of *burst*).

    The rate follows the token bucket of :func:`concur.map_async` (GCRA, capacity
    *burst*): an item is read first, then waits for its token, so the end of the source
    is noticed without waiting.

    Raises:
        ValueError: ``per_second <= 0`` or ``burst < 1``.
        TypeError: *source* is not iterable, or an option has the wrong type.

    Cancellation: cancelling a waiting ``anext()`` drops the item that was read; the
    iterator stays usable.
    """
    check_rate(per_second, burst, "per_second")
    return _Throttle(source, RateLimiter(per_second, burst))


def take(source: AsyncIterable[T] | Iterable[T], n: int) -> ClosingAsyncIterator[T]:
    """Pass on the first *n* items of *source*, then close it.

    The source is closed as soon as the *n*-th item has been read.

    Raises:
        ValueError: ``n < 0``.
        TypeError: *source* is not iterable, or *n* is not an int.
    """
    check_int(n, "n", minimum=0)
    return _Take(source, n)


def skip(source: AsyncIterable[T] | Iterable[T], n: int) -> ClosingAsyncIterator[T]:
    """Drop the first *n* items of *source* and pass on the rest.

    Raises:
        ValueError: ``n < 0``.
        TypeError: *source* is not iterable, or *n* is not an int.
    """
    check_int(n, "n", minimum=0)
    return _Skip(source, n)


def filter(
    source: AsyncIterable[T] | Iterable[T],
    pred: Callable[[T], Awaitable[object]] | Callable[[T], object],
) -> ClosingAsyncIterator[T]:
    """Pass on the items of *source* for which *pred* is true.

    *pred* may be sync or async. A sync *pred* is called on the event loop's thread (it
    should be quick; it is not sent to a worker thread).

    Raises:
        TypeError: *pred* is not callable or *source* is not iterable.
    """
    return _Filter(source, pred)


def enumerate(
    source: AsyncIterable[T] | Iterable[T], start: int = 0
) -> ClosingAsyncIterator[tuple[int, T]]:
    """Pass on ``(index, item)`` pairs, counting from *start*.

    Raises:
        TypeError: *source* is not iterable, or *start* is not an int.
    """
    return _Enumerate(source, start)
