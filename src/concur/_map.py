"""The bounded map engine: ``map_async`` and the streaming ``amap`` block.

A map runs on a pool of at most *limit* worker tasks in an anyio task group, which call
the function directly and pull the input lazily (a sync input without a lock): an item
is read only when a worker is free to start it. No task per item, no channel per item.

Error rule (the call-like helpers): when exactly one job failed and the others were only
cancelled by fail-fast, its exception is raised bare, traceback intact; when two or more
failed on their own, the task group's ``ExceptionGroup`` is raised as it is.
"""

from __future__ import annotations

import collections
import enum
import functools
import inspect
import operator
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Final, Generic, Literal, NoReturn, TypeVar, cast, final, overload

import anyio
import anyio.lowlevel

from ._core import (
    CallGroup,
    call,
    check_function,
    check_int,
    is_async_callable,
    settings_var,
    to_thread,
)
from ._core.limits import give_back_on_error, take_token, unlimited
from ._core.settings import bounded
from ._ratelimit import RateLimiter, check_rate

__all__ = ["ListMap", "Source", "amap", "map_async"]

T = TypeVar("T")
R = TypeVar("R")

_CLOSE_TIMEOUT: Final = 5.0  # seconds an input's aclose() may take when a map is left
#: a list-map worker checkpoints once every this many items, so that calls (and an input)
#: that never yield can neither starve the other tasks nor ignore a cancellation
_YIELD_EVERY: Final = 64


class _Sentinel(enum.Enum):
    END = enum.auto()


_END: Final = _Sentinel.END


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


# --- the engine -----------------------------------------------------------------------------


def _runner(
    fn: Callable[[T], Awaitable[R]] | Callable[[T], R],
) -> tuple[Callable[[T], Awaitable[R]], anyio.CapacityLimiter | None]:
    """The per-item call for *fn*, and the thread limiter a sync *fn*'s workers hold.

    An async *fn* is called as it is (through :func:`concur.call` when a timeout is
    ambient). A sync *fn* runs through :func:`concur.to_thread`, but the token of the
    ambient thread limiter is taken by the worker before it reads an item (see
    :meth:`Source.pull`) and held until the thread has returned; the thread call itself
    then goes through a limiter of its own that never waits. So under a thread cap below
    the map's limit, items are still read only when a call can start at once, and the
    rate limit spaces thread starts, not items queued for a thread.
    """
    settings = settings_var.get()
    timeout = settings.timeout
    if is_async_callable(fn):
        if timeout is None:
            return cast("Callable[[T], Awaitable[R]]", fn), None
        return cast("Callable[[T], Awaitable[R]]", functools.partial(call, cast(Any, fn))), None
    sync_fn = cast("Callable[[T], R]", fn)
    no_wait = unlimited()

    async def run(item: T) -> R:
        return await bounded(timeout, to_thread, sync_fn, item, limiter=no_wait)

    return run, settings.current_limiter()


@final
class Source(Generic[T]):
    """The input of a map, pulled by several workers, one item at a time."""

    __slots__ = ("_aiter", "_iter", "_lock", "_rate", "done", "fast", "hint", "slot")

    def __init__(
        self,
        items: Iterable[T] | AsyncIterable[T],
        rate: RateLimiter | None,
        slot: anyio.CapacityLimiter | None = None,
    ) -> None:
        self._rate = rate
        #: the limiter whose token a worker takes before it reads (for a sync fn's threads)
        self.slot = slot
        self.done = False
        self._iter: Iterator[T] | None = None
        self._aiter: AsyncIterator[T] | None = None
        #: how many items there probably are (0: unknown); more workers start as needed
        self.hint = 0
        if isinstance(items, AsyncIterable):
            self._aiter = aiter(items)
        else:
            self.hint = operator.length_hint(items, 0)
            self._iter = iter(items)
        #: a sync iterator the workers may call next() on directly (no lock, rate or slot)
        self.fast = self._iter if rate is None and slot is None else None
        self._lock = None if self.fast is not None else anyio.Lock(fast_acquire=True)

    async def pull(self, borrower: object) -> T | Literal[_Sentinel.END]:
        """The next item, after its rate-limit wait; ``_END`` when the input is exhausted.

        With a :attr:`slot`, a token is taken on behalf of *borrower* before the item is
        read; the caller releases it when the item's call has ended (at ``_END`` or on an
        error here it is released already).
        """
        lock = self._lock
        assert lock is not None
        async with lock:
            if self.done:
                return _END
            slot = self.slot
            if slot is None:
                return await self._read()
            await take_token(slot, borrower)
            with give_back_on_error(slot, borrower):
                got = await self._read()
            if got is _END:
                slot.release_on_behalf_of(borrower)
            return got

    async def _read(self) -> T | Literal[_Sentinel.END]:
        it = self._iter
        if it is not None:
            try:
                item = next(it)
            except StopIteration:
                self.done = True
                return _END
        else:
            try:
                item = await anext(cast("AsyncIterator[T]", self._aiter))
            except StopAsyncIteration:
                self.done = True
                return _END
        if self._rate is not None:
            await self._rate.acquire()
        return item

    def close_sync(self) -> None:
        """Close a sync generator input (the remaining items are not read)."""
        if inspect.isgenerator(self._iter):
            self._iter.close()

    async def aclose(self) -> None:
        """Close the input: ``aclose()`` an async iterator, ``close()`` a generator.

        Runs shielded, for at most ``_CLOSE_TIMEOUT`` seconds.
        """
        ait = self._aiter
        if ait is None:
            self.close_sync()
            return
        aclose = getattr(ait, "aclose", None)
        if aclose is not None:
            with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                await aclose()


@final
class ListMap(Generic[T, R]):
    """A bounded map whose results are collected in a list (``gather``, ``map_async``)."""

    __slots__ = ("_limit", "_ordered", "_results", "_run", "_source", "_tg", "_workers")

    def __init__(
        self,
        run: Callable[[T], Awaitable[R]],
        source: Source[T],
        limit: int,
        ordered: bool,
    ) -> None:
        self._run = run
        self._source = source
        self._limit = limit
        self._ordered = ordered
        self._results: list[Any] = []
        self._workers = 1
        self._tg: CallGroup | None = None

    async def run(self) -> list[R]:
        try:
            async with CallGroup() as tg:
                self._tg = tg
                self._workers = max(1, min(self._limit, self._source.hint))
                for _ in range(self._workers - 1):
                    tg.start_soon(self._worker)
                await self._worker()  # the host is a worker too
        finally:
            self._tg = None
            await self._source.aclose()
        return cast("list[R]", self._results)

    async def _worker(self) -> None:
        source = self._source
        fast = source.fast
        run = self._run
        results = self._results
        ordered = self._ordered
        slot = source.slot
        borrower = object()  # holds this worker's slot token, if any
        countdown = _YIELD_EVERY
        while True:
            countdown -= 1
            if not countdown:
                countdown = _YIELD_EVERY
                await anyio.lowlevel.checkpoint()
            if fast is not None:
                try:
                    item = next(fast)
                except StopIteration:
                    return
            else:
                got = await source.pull(borrower)
                if got is _END:
                    return
                item = got
            if self._workers < self._limit:
                self._workers += 1
                cast(CallGroup, self._tg).start_soon(self._worker)
            i = len(results)
            if ordered:
                results.append(None)
            if slot is None:
                result = await run(item)
            else:
                try:
                    result = await run(item)
                finally:
                    slot.release_on_behalf_of(borrower)
            if ordered:
                results[i] = result
            else:
                results.append(result)


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
    run, slot = _runner(fn)
    return await ListMap(run, Source(items, rate, slot), limit, ordered).run()


@final
class _Results(Generic[T, R]):
    """The iterator of an ``amap`` block, and the workers that feed it."""

    __slots__ = (
        "_capacity",
        "_closed",
        "_finished",
        "_limit",
        "_next_in",
        "_next_out",
        "_ordered",
        "_outstanding",
        "_ready",
        "_ready_at",
        "_run",
        "_space_waiters",
        "_tg",
        "_waiter",
        "_workers",
        "source",
    )

    def __init__(
        self,
        run: Callable[[T], Awaitable[R]],
        source: Source[T],
        tg: CallGroup,
        limit: int,
        buffer: int,
        ordered: bool,
    ) -> None:
        self._run = run
        self.source = source
        self._tg = tg
        self._limit = limit
        self._capacity = limit + buffer
        self._ordered = ordered
        self._ready: collections.deque[R] = collections.deque()
        self._ready_at: dict[int, R] = {}
        self._next_in = 0
        self._next_out = 0
        self._outstanding = 0  # items read and not yet handed to the consumer
        self._workers = 1
        self._finished = False
        self._closed = False
        self._waiter: anyio.Event | None = None
        self._space_waiters: collections.deque[anyio.Event] = collections.deque()

    def __aiter__(self) -> _Results[T, R]:
        return self

    async def __anext__(self) -> R:
        if self._closed:
            raise anyio.ClosedResourceError("the amap block has been left")
        if self._tg.cancel_scope.cancel_called:
            # fail-fast: stop at once, even with results ready (outside cancellation
            # reaches us when we wait, at the latest after limit + buffer results)
            await anyio.lowlevel.checkpoint()
        while True:
            if self._ordered:
                ready_at = self._ready_at
                if self._next_out in ready_at:
                    result = ready_at.pop(self._next_out)
                    self._next_out += 1
                    break
            elif self._ready:
                result = self._ready.popleft()
                break
            if self._finished:
                raise StopAsyncIteration
            if self._waiter is not None:
                raise anyio.BusyResourceError("iterating over these amap results")
            waiter = self._waiter = anyio.Event()
            try:
                await waiter.wait()
            finally:
                self._waiter = None
            # on asyncio a wake-up can beat the delivery of an outside cancellation: see it
            # here, so a consumer that never awaits stops within limit + buffer results
            await anyio.lowlevel.checkpoint_if_cancelled()
        self._outstanding -= 1
        if self._space_waiters:
            self._space_waiters.popleft().set()
        return result

    def start_workers(self) -> None:
        self._workers = max(1, min(self._limit, self.source.hint))
        for _ in range(self._workers):
            self._tg.start_soon(self.worker)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    async def worker(self) -> None:
        source = self.source
        fast = source.fast
        run = self._run
        ordered = self._ordered
        slot = source.slot
        borrower = object()  # holds this worker's slot token, if any
        while True:
            while self._outstanding >= self._capacity:
                space = anyio.Event()
                self._space_waiters.append(space)
                await space.wait()
            self._outstanding += 1
            got: T | Literal[_Sentinel.END]
            if fast is not None:
                try:
                    got = next(fast)
                except StopIteration:
                    got = _END
            else:
                got = await source.pull(borrower)
            if got is _END:
                self._outstanding -= 1
                self._workers -= 1
                if self._workers == 0:
                    self._finished = True
                    self._wake()
                return
            if self._workers < self._limit:
                self._workers += 1
                self._tg.start_soon(self.worker)
            i = self._next_in
            self._next_in = i + 1
            if slot is None:
                result = await run(got)
            else:
                try:
                    result = await run(got)
                finally:
                    slot.release_on_behalf_of(borrower)
            if ordered:
                self._ready_at[i] = result
            else:
                self._ready.append(result)
            self._wake()

    def close(self) -> None:
        self._closed = True
        self._ready.clear()
        self._ready_at.clear()


@final
class amap(Generic[T, R]):
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

    __slots__ = ("_buffer", "_fn", "_items", "_limit", "_ordered", "_rate", "_results", "_tg")

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
        self._tg: CallGroup | None = None
        self._results: _Results[T, R] | None = None

    def __await__(self) -> NoReturn:
        raise TypeError(
            "concur.amap() streams its results and must be used as "
            "'async with concur.amap(fn, items) as results: async for r in results: ...'; "
            "to get a list, write 'await concur.map_async(fn, items)'"
        )

    async def __aenter__(self) -> AsyncIterator[R]:
        if self._tg is not None or self._results is not None:
            raise RuntimeError("this amap has already been entered; make a new one")
        per_second, burst = self._rate
        rate = None if per_second is None else RateLimiter(per_second, burst)
        run, slot = _runner(self._fn)
        source = Source(self._items, rate, slot)
        tg = CallGroup()
        await tg.__aenter__()
        self._tg = tg
        results = self._results = _Results(
            run, source, tg, self._limit, self._buffer, self._ordered
        )
        results.start_workers()
        return results

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        tg, results = self._tg, self._results
        assert tg is not None and results is not None
        tg.cancel_scope.cancel()
        try:
            return await tg.__aexit__(exc_type, exc_val, exc_tb)
        finally:
            results.close()
            await results.source.aclose()
