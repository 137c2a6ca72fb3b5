"""The engine of the bounded maps: the input, the per-item call, and the worker loop.

A map runs on a pool of at most *limit* worker tasks in a task group, which call the
function directly and pull the input lazily (a sync input without a lock): an item is
read only when a worker is free to start it. No task per item, no channel per item.
:class:`ListMap` (``map_async``, ``gather``) collects the results in a list;
:class:`StreamMap` (``amap``) hands them to one consumer through a bounded
:class:`~concur._core.channel.Channel`. Both run the one worker loop,
:meth:`MapWorkers.work`.
"""

from __future__ import annotations

import enum
import functools
import inspect
import operator
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, Final, Generic, Literal, TypeVar, cast, final

import anyio
import anyio.lowlevel

from ._core import CallGroup, call, is_async_callable, settings_var, to_thread
from ._core.channel import Channel
from ._core.closing import aclose_bounded
from ._core.limits import give_back_on_error, take_token, unlimited
from ._core.settings import bounded
from ._ratelimit import RateLimiter

__all__ = ["END", "ListMap", "MapWorkers", "Source", "StreamMap", "per_item_call"]

T = TypeVar("T")
R = TypeVar("R")

#: a worker checkpoints once every this many items, so that calls (and an input) that
#: never yield can neither starve the other tasks nor ignore a cancellation
_YIELD_EVERY: Final = 64


class _Sentinel(enum.Enum):
    END = enum.auto()


#: what :meth:`Source.pull` returns when the input is exhausted
END: Final = _Sentinel.END


def per_item_call(
    fn: Callable[[T], Awaitable[R]] | Callable[[T], R],
) -> tuple[Callable[[T], Awaitable[R]], anyio.CapacityLimiter | None]:
    """The call a map makes for each item, and the thread limiter a sync *fn*'s workers hold.

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
        """The next item, after its rate-limit wait; :data:`END` when the input is exhausted.

        With a :attr:`slot`, a token is taken on behalf of *borrower* before the item is
        read; the caller releases it when the item's call has ended (at :data:`END` or on
        an error here it is released already).
        """
        lock = self._lock
        assert lock is not None
        async with lock:
            if self.done:
                return END
            slot = self.slot
            if slot is None:
                return await self._read()
            await take_token(slot, borrower)
            with give_back_on_error(slot, borrower):
                got = await self._read()
            if got is END:
                slot.release_on_behalf_of(borrower)
            return got

    async def _read(self) -> T | Literal[_Sentinel.END]:
        it = self._iter
        if it is not None:
            try:
                item = next(it)
            except StopIteration:
                self.done = True
                return END
        else:
            try:
                item = await anext(cast("AsyncIterator[T]", self._aiter))
            except StopAsyncIteration:
                self.done = True
                return END
        if self._rate is not None:
            await self._rate.acquire()
        return item

    async def aclose(self) -> None:
        """Close the input: ``aclose()`` an async iterator, ``close()`` a generator.

        Runs shielded, for at most ``CLOSE_TIMEOUT`` seconds (the remaining items are not
        read).
        """
        if self._aiter is not None:
            await aclose_bounded(self._aiter)
        elif inspect.isgenerator(self._iter):
            self._iter.close()


# The one worker loop of both maps. A list map (results is a list) and a stream map
# (channel is its Channel) differ in three places only: the stream reserves a place in its
# channel before it reads an item (back-pressure), a worker at the end of the input closes
# its share of the stream, and a result goes to the channel (through the reorder buffer
# when it must wait for earlier ones) instead of the list. Those are tests of locals, and
# the channel's reservation is its try_reserve() inline, rather than calls of methods the
# subclasses override: the loop costs about 1.7 us per item on asyncio (B4, jobs that only
# yield), so each call per item would cost about 3%. Measured against the two loops it
# replaced (python -m benchmarks.bench_map --versus 4ca3e17~1 --rounds 21; the median of
# the per-round ratios of the event loop thread's CPU time): map_async +1.3% on asyncio,
# -0.4% on trio; amap +2.3% and +0.1%; wall-time medians within +3.4% (noise on a busy
# 2-core machine is larger). Under the 5% that would have kept two loops (issue 11).
class MapWorkers(Generic[T, R]):
    """The worker pool of a map: up to *limit* tasks that run :meth:`work`."""

    __slots__ = (
        "_channel",
        "_limit",
        "_next_in",
        "_next_out",
        "_ordered",
        "_reorder",
        "_results",
        "_run",
        "_tg",
        "_workers",
        "source",
    )

    def __init__(
        self,
        run: Callable[[T], Awaitable[R]],
        source: Source[T],
        limit: int,
        ordered: bool,
    ) -> None:
        self._run = run
        self.source = source
        self._limit = limit
        self._ordered = ordered
        #: a list map's results (ordered: a placeholder until its call has returned)
        self._results: list[Any] | None = None
        #: a stream map's channel to the consumer
        self._channel: Channel[R] | None = None
        self._next_in = 0  # a stream map's index of the next item read
        #: a stream map's ordered results that wait for earlier ones, by index
        self._reorder: dict[int, R] = {}
        self._next_out = 0  # a stream map's index of the next result to put in the channel
        self._workers = 1  # the workers started (a stream's: that have not ended)
        self._tg: CallGroup | None = None

    def _first_workers(self) -> int:
        """How many workers to start at once: *limit*, or fewer for a short input."""
        self._workers = max(1, min(self._limit, self.source.hint))
        return self._workers

    def _put_in_order(self, i: int, result: R) -> None:
        """Hand the result of item *i* to the consumer in input order, through the reorder
        buffer (a stream map; when *i* is next and nothing waits, the loop puts it)."""
        raise NotImplementedError

    def _input_ended(self) -> None:
        """A worker found the input exhausted and stops."""

    async def work(self) -> None:
        """Run items until the input is exhausted. One task of the map's pool runs this."""
        source = self.source
        fast = source.fast
        run = self._run
        slot = source.slot
        results = self._results
        channel = self._channel
        ordered = self._ordered
        borrower = object()  # holds this worker's slot token, if any
        countdown = _YIELD_EVERY
        while True:
            countdown -= 1
            if not countdown:
                countdown = _YIELD_EVERY
                await anyio.lowlevel.checkpoint()
            if channel is not None:  # a place for the result: channel.try_reserve(), inline
                if channel.taken < channel.capacity:
                    channel.taken += 1
                else:
                    await channel.reserve()
            got: T | Literal[_Sentinel.END]
            if fast is not None:
                try:
                    got = next(fast)
                except StopIteration:
                    got = END
            else:
                got = await source.pull(borrower)
            if got is END:
                self._input_ended()
                return
            if self._workers < self._limit:
                self._workers += 1
                cast(CallGroup, self._tg).start_soon(self.work)
            if results is not None:
                i = len(results)
                if ordered:
                    results.append(None)
            else:
                i = self._next_in
                self._next_in = i + 1
            if slot is None:
                result = await run(got)
            else:
                try:
                    result = await run(got)
                finally:
                    slot.release_on_behalf_of(borrower)
            if results is None:
                assert channel is not None
                if not ordered:
                    channel.put(result)
                elif i == self._next_out and not self._reorder:  # no result to wait for
                    channel.put(result)
                    self._next_out = i + 1
                else:
                    self._put_in_order(i, result)
            elif ordered:
                results[i] = result
            else:
                results.append(result)


@final
class ListMap(MapWorkers[T, R]):
    """A bounded map whose results are collected in a list (``gather``, ``map_async``)."""

    __slots__ = ()

    async def run(self) -> list[R]:
        """Run every item; the results. The input is closed in every case."""
        self._results = []
        try:
            async with CallGroup() as tg:
                self._tg = tg
                for _ in range(self._first_workers() - 1):
                    tg.start_soon(self.work)
                await self.work()  # the host is a worker too
        finally:
            self._tg = None
            await self.source.aclose()
        return cast("list[R]", self._results)


@final
class StreamMap(MapWorkers[T, R]):
    """The workers of an ``amap`` block, and the iterator of its results.

    The channel bounds the items between the input and the consumer (read and running,
    finished and waiting in the reorder buffer, or in the channel) to ``limit + buffer``.
    """

    __slots__ = ("_closed", "_group", "_out")

    def __init__(
        self,
        run: Callable[[T], Awaitable[R]],
        source: Source[T],
        tg: CallGroup,
        limit: int,
        buffer: int,
        ordered: bool,
    ) -> None:
        super().__init__(run, source, limit, ordered)
        self._tg = self._group = tg
        # one sender: the pool, which closes when its last worker has ended
        out = Channel[R](limit + buffer, 1, "iterating over these amap results")
        self._channel = self._out = out
        self._closed = False

    def start(self) -> None:
        """Start the workers."""
        tg = self._group
        for _ in range(self._first_workers()):
            tg.start_soon(self.work)

    def _put_in_order(self, i: int, result: R) -> None:
        reorder = self._reorder
        reorder[i] = result
        n = self._next_out
        channel = self._out
        while n in reorder:
            channel.put(reorder.pop(n))
            n += 1
        self._next_out = n

    def _input_ended(self) -> None:
        channel = self._out
        channel.unreserve()
        self._workers -= 1
        if self._workers == 0:
            channel.close_sender()

    def __aiter__(self) -> StreamMap[T, R]:
        return self

    async def __anext__(self) -> R:
        if self._closed:
            raise anyio.ClosedResourceError("the amap block has been left")
        if self._group.cancel_scope.cancel_called:
            # fail-fast: stop at once, even with results ready (outside cancellation
            # reaches us when we wait, at the latest after limit + buffer results)
            await anyio.lowlevel.checkpoint()
        channel = self._out
        if not channel.items and not channel.ready():  # (items: ready()'s common case)
            await channel.wait_ready()
            # on asyncio a wake-up can beat the delivery of an outside cancellation: see it
            # here, so a consumer that never awaits stops within limit + buffer results
            await anyio.lowlevel.checkpoint_if_cancelled()
        try:
            return channel.receive_nowait()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        """Drop the results not taken, and close the input (the workers have ended)."""
        self._closed = True
        self._reorder.clear()
        self._out.clear()
        await self.source.aclose()
