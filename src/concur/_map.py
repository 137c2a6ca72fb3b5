"""The bounded maps: ``map_async`` and the streaming ``amap`` block.

Their engine (the input, the per-item call, the worker pool) is :mod:`concur._map_engine`.

Error rule (the call-like helpers): when exactly one job failed and the others were only
cancelled by fail-fast, its exception is raised bare, traceback intact; when two or more
failed on their own, the task group's ``ExceptionGroup`` is raised as it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Generic, NoReturn, TypeVar, final, overload

from ._core import check_function, check_int
from ._core.closing import GroupBlock
from ._map_engine import ListMap as ListMap
from ._map_engine import Source as Source
from ._map_engine import StreamMap, per_item_call
from ._ratelimit import RateLimiter, check_rate

__all__ = ["ListMap", "Source", "amap", "map_async"]

T = TypeVar("T")
R = TypeVar("R")


# --- validation -------------------------------------------------------------------------------


def _check_items(items: object) -> None:
    if not isinstance(items, (Iterable, AsyncIterable)):
        raise TypeError(
            f"items must be an iterable or an async iterable, got {type(items).__name__}"
        )


def _check_map_args(
    fn: object,
    items: object,
    limit: object,
    max_per_second: object,
    burst: object,
    ordered: object,
    where: str,
) -> None:
    check_function(fn, where)
    if type(ordered) is not bool:
        raise TypeError(f"ordered must be True or False, got {ordered!r}")
    _check_items(items)
    check_int(limit, "limit")
    if max_per_second is not None:
        check_rate(max_per_second, burst)
    else:
        check_int(burst, "burst")


# --- map_async and amap -----------------------------------------------------------------------


@overload
async def map_async(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    limit: int = 10,
    max_per_second: float | None = None,
    burst: int = 1,
    ordered: bool = True,
) -> list[R]: ...


@overload
async def map_async(
    fn: Callable[[T], R],
    items: Iterable[T] | AsyncIterable[T],
    *,
    limit: int = 10,
    max_per_second: float | None = None,
    burst: int = 1,
    ordered: bool = True,
) -> list[R]: ...


async def map_async(
    fn: Callable[[T], Awaitable[R]] | Callable[[T], R],
    items: Iterable[T] | AsyncIterable[T],
    *,
    limit: int = 10,
    max_per_second: float | None = None,
    burst: int = 1,
    ordered: bool = True,
) -> list[R]:
    """Call *fn* on every item of *items*, at most *limit* at once, and return the results.

    *fn* may be async or sync (a sync *fn* runs in worker threads through
    :func:`concur.call`, under the ambient limiter and handoff policy). *items* is an
    iterable or an async iterable, consumed lazily: an item is read only when a call slot
    is free (for a sync *fn*, also a token of the ambient thread limiter, so a thread cap
    below *limit* neither queues read items nor bunches rate-limited starts), so at most
    one item has been read but not started. Fail-fast: the first failure cancels the
    running calls, and no more items are read.

    Args:
        fn: the function, called with one item.
        items: the input, sync or async.
        limit: the most calls running at once.
        max_per_second: a rate limit on call starts (see :doc:`/wait` for the exact
            rule): a token bucket of capacity *burst* refilled at this many per second.
            The wait comes after an item is read.
        burst: the bucket's capacity, the most calls that may start at once.
        ordered: results in input order (``True``) or in completion order.

    Returns:
        The results.

    Raises:
        Exception: the exception of the one call that failed, bare, when the others were
            only cancelled by fail-fast; an exception raised by the input the same way.
        ExceptionGroup: when two or more calls failed on their own.
        TypeError: *fn* is not callable, *items* is not iterable, or an option has the
            wrong type.
        ValueError: ``limit < 1``, ``max_per_second <= 0`` or ``burst < 1``.

    Cancellation: cancelling the caller cancels the running calls and waits until they
    have finished (a sync call's thread is waited for); then the input is closed
    (``aclose()`` on an async generator, ``close()`` on a generator, shielded, for at most
    5 seconds) and the cancellation propagates. The input is closed the same way after a
    failure and after normal completion. Even when neither *fn* nor the input ever yields,
    the map checkpoints every 64 items, so it never starves other tasks or ignores a
    cancellation for long.
    """
    _check_map_args(fn, items, limit, max_per_second, burst, ordered, "map_async")
    rate = None if max_per_second is None else RateLimiter(max_per_second, burst)
    run, slot = per_item_call(fn)
    return await ListMap(run, Source(items, rate, slot), limit, ordered).run()


# Lowercase on purpose, as ``concur.scope`` and the stream operators: amap is used as a
# function call that opens a block (``async with concur.amap(...)``), like anyio's
# ``create_task_group()`` and trio's ``open_nursery()``, which are functions. It stays a
# class, not a function returning one, so that the object can refuse ``await`` with a
# message that names map_async, and ``concur.amap[T, R]`` stays a type for annotations;
# renaming it would break the public API.
@final
class amap(GroupBlock, Generic[T, R]):
    """Stream the results of *fn* over *items*, at most *limit* calls at once.

    An async context manager (only: awaiting it raises ``TypeError``; use
    :func:`map_async` for a list)::

        async with concur.amap(fetch, urls, limit=20) as results:
            async for page in results:
                ...

    *fn* may be async or sync (a sync *fn* runs in worker threads through
    :func:`concur.call`). *items* is an iterable or an async iterable, read lazily: an item
    is read only when a call slot is free (for a sync *fn*, also a token of the ambient
    thread limiter), so at most one item has been read but not started, and the end of
    the input is noticed before any rate-limit wait.

    **Back-pressure.** At most *limit* calls run at once, and at most ``limit + buffer``
    items are between the input and the consumer (running, or finished and waiting to be
    read). When the consumer stops reading, production stops; memory stays
    O(limit + buffer), whatever the number of items.

    **Leaving the block** early (``break``, an exception, outside cancellation), even
    before reading anything, cancels the running calls and waits for them, then closes the
    input (``aclose()`` on an async iterator, ``close()`` on a generator; shielded, for at
    most 5 seconds). Unlike ``aiometer.amap``, the remaining items are not run. The input
    is closed the same way when the block ends normally.

    **Errors** follow the rule of :func:`gather`: fail-fast; the first failure cancels the
    other calls and the body (at its next checkpoint), and the block raises that exception
    bare, or an ``ExceptionGroup`` when two or more calls (or the body) failed on their
    own.

    Args:
        fn: the function, called with one item.
        items: the input, sync or async.
        limit: the most calls running at once.
        max_per_second: a rate limit on call starts (see :func:`map_async`).
        burst: the rate limiter's capacity.
        ordered: yield results in input order (the default, as :func:`map_async` and
            :func:`concur.streams.map`; a finished result may then wait for earlier ones,
            and counts against *buffer*), or as they complete (``ordered=False``).
        buffer: how many finished results may wait for the consumer; default *limit*.

    Raises:
        TypeError: *fn* is not callable, *items* is not iterable, an option has the wrong
            type, or the object is awaited.
        ValueError: ``limit < 1``, ``buffer < 0``, ``max_per_second <= 0`` or
            ``burst < 1``.

    The results are for one consumer task: a second task iterating while the first waits
    gets :exc:`anyio.BusyResourceError`; iterating after the block is left raises
    :exc:`anyio.ClosedResourceError`. Taking a result that is ready is not a checkpoint
    (unless a call failed), so a consumer that never awaits anything else sees an outside
    cancellation when it next waits for a result, after at most ``limit + buffer`` results.
    """

    __slots__ = ("_buffer", "_fn", "_items", "_limit", "_ordered", "_rate", "_results")

    @overload
    def __init__(
        self,
        fn: Callable[[T], Awaitable[R]],
        items: Iterable[T] | AsyncIterable[T],
        *,
        limit: int = 10,
        max_per_second: float | None = None,
        burst: int = 1,
        ordered: bool = True,
        buffer: int | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        fn: Callable[[T], R],
        items: Iterable[T] | AsyncIterable[T],
        *,
        limit: int = 10,
        max_per_second: float | None = None,
        burst: int = 1,
        ordered: bool = True,
        buffer: int | None = None,
    ) -> None: ...

    def __init__(
        self,
        fn: Callable[[T], Awaitable[R]] | Callable[[T], R],
        items: Iterable[T] | AsyncIterable[T],
        *,
        limit: int = 10,
        max_per_second: float | None = None,
        burst: int = 1,
        ordered: bool = True,
        buffer: int | None = None,
    ) -> None:
        _check_map_args(fn, items, limit, max_per_second, burst, ordered, "amap")
        super().__init__()
        if buffer is None:
            buffer = limit
        else:
            check_int(buffer, "buffer", minimum=0)
        self._fn = fn
        self._items = items
        self._limit = limit
        self._rate = max_per_second, burst
        self._ordered = ordered
        self._buffer = buffer
        self._results: StreamMap[T, R] | None = None

    def __await__(self) -> NoReturn:
        raise TypeError(
            "concur.amap() streams its results and must be used as "
            "'async with concur.amap(fn, items) as results: async for r in results: ...'; "
            "to get a list, write 'await concur.map_async(fn, items)'"
        )

    async def __aenter__(self) -> AsyncIterator[R]:
        if self._results is not None:
            raise RuntimeError("this amap has already been entered; make a new one")
        per_second, burst = self._rate
        rate = None if per_second is None else RateLimiter(per_second, burst)
        run, slot = per_item_call(self._fn)
        source = Source(self._items, rate, slot)
        tg = await self._open_group()
        results = self._results = StreamMap(
            run, source, tg, self._limit, self._buffer, self._ordered
        )
        results.start()
        return results

    async def _close_rest(self) -> None:
        # the workers have ended: drop the results not taken, close the input
        results = self._results
        assert results is not None
        await results.close()
