"""Operators over async iterables (and plain iterables), safe on asyncio and trio.

Two kinds:

- Operators that need background tasks (``merge``, ``buffer``, ``batch``, ``map``) are
  async context managers over a task group, so the consumer's body runs inside the
  group's scope, exactly as in a nursery block. They are never async generators that
  yield inside a task group (which corrupts trio's cancellation).
- The others (``throttle``, ``take``, ``skip``, ``filter``, ``enumerate``) are plain async
  iterators, with no task: they ``aclose()`` their source when they are closed or
  exhausted.
"""

from __future__ import annotations

import builtins
import collections
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Final, Generic, Self, TypeVar, cast, final, overload

import anyio
import anyio.lowlevel

from ._core import CallGroup, check_function, check_int, is_async_callable
from ._map import amap
from ._ratelimit import RateLimiter, check_rate

__all__ = [
    "ClosingAsyncIterator",
    "batch",
    "buffer",
    "enumerate",
    "filter",
    "map",
    "merge",
    "skip",
    "take",
    "throttle",
]

T = TypeVar("T")
R = TypeVar("R")

_CLOSE_TIMEOUT: Final = 5.0


# --- sources ----------------------------------------------------------------------------------


def _check_source(source: object, where: str = "source") -> None:
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


def _aiter(source: AsyncIterable[T] | Iterable[T]) -> AsyncIterator[T]:
    if isinstance(source, AsyncIterable):
        return aiter(source)
    return _SyncSource(source)


async def _aclose(it: object) -> None:
    """``aclose()`` *it* if it can be closed: shielded, for at most ``_CLOSE_TIMEOUT``."""
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await aclose()


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
        _check_source(source)
        self._source: AsyncIterator[Any] | None = _aiter(source)
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
            await _aclose(source)


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


# --- a bounded, cancellation-safe channel ----------------------------------------------------


@final
class _Channel(Generic[T]):
    """A bounded FIFO between pump tasks and one consumer; no item is lost to cancellation.

    Items wait in a deque; waiting is on events, so a cancelled wait loses nothing.
    """

    __slots__ = ("_capacity", "_items", "_receiver", "_senders", "_space")

    def __init__(self, capacity: int, senders: int) -> None:
        self._capacity = capacity
        self._items: collections.deque[T] = collections.deque()
        self._senders = senders
        self._receiver: anyio.Event | None = None
        self._space: collections.deque[anyio.Event] = collections.deque()

    async def send(self, item: T) -> None:
        while len(self._items) >= self._capacity:
            space = anyio.Event()
            self._space.append(space)
            await space.wait()
        self._items.append(item)
        self._wake_receiver()

    def close_sender(self) -> None:
        self._senders -= 1
        if self._senders <= 0:
            self._wake_receiver()

    def _wake_receiver(self) -> None:
        receiver = self._receiver
        if receiver is not None:
            self._receiver = None
            receiver.set()

    def ready(self) -> bool:
        """Whether an item (or the end) can be received without waiting."""
        return bool(self._items) or self._senders <= 0

    async def wait_ready(self) -> None:
        """Wait until :meth:`ready`. Cancellation loses nothing."""
        while not self.ready():
            if self._receiver is not None:
                raise anyio.BusyResourceError("receiving from this stream")
            receiver = self._receiver = anyio.Event()
            try:
                await receiver.wait()
            finally:
                if self._receiver is receiver:
                    self._receiver = None

    async def receive(self) -> T:
        """The next item; ``anyio.EndOfStream`` once every sender closed and it is empty."""
        await self.wait_ready()
        return self.receive_nowait()

    def receive_nowait(self) -> T:
        if not self._items:
            if self._senders <= 0:
                raise anyio.EndOfStream
            raise anyio.WouldBlock
        item = self._items.popleft()
        if self._space:
            self._space.popleft().set()
        return item


@final
class _Pump(Generic[T]):
    """Copies one source into a channel, in a task; closes the source, once, whatever happens.

    Only an exhausted source ends the pump's share of the stream: a pump that fails (or is
    cancelled) leaves the consumer waiting, so that the task group's cancellation, not an
    early ``StopAsyncIteration``, is what the consumer sees.
    """

    __slots__ = ("_channel", "_closed", "_it", "_stamp")

    def __init__(
        self, source: AsyncIterable[T] | Iterable[T], channel: _Channel[Any], stamp: bool
    ) -> None:
        self._it = _aiter(source)
        self._channel = channel
        self._stamp = stamp
        self._closed = False

    async def run(self) -> None:
        channel, stamp = self._channel, self._stamp
        try:
            async for item in self._it:
                await channel.send((anyio.current_time(), item) if stamp else item)
        finally:
            await self.close()
        channel.close_sender()

    async def close(self) -> None:
        """Close the source (also when the task never started). Idempotent."""
        if not self._closed:
            self._closed = True
            await _aclose(self._it)


# --- context-manager operators ----------------------------------------------------------------


class _TaskOperator(Generic[T]):
    """The base of the operators that run pump tasks in a task group."""

    __slots__ = ("_channel", "_entered", "_pumps", "_tg")

    def __init__(self) -> None:
        self._pumps: list[_Pump[Any]] = []
        self._tg: CallGroup | None = None
        self._channel: _Channel[Any] | None = None
        self._entered = False

    def _start(self) -> _Channel[Any]:
        """Make the channel and its pumps (with :meth:`_pump`); nothing runs yet."""
        raise NotImplementedError

    def _pump(
        self,
        source: AsyncIterable[Any] | Iterable[Any],
        channel: _Channel[Any],
        stamp: bool = False,
    ) -> None:
        self._pumps.append(_Pump(source, channel, stamp))

    def _iterator(self, channel: _Channel[Any]) -> AsyncIterator[T]:
        raise NotImplementedError

    async def __aenter__(self) -> AsyncIterator[T]:
        if self._entered:
            raise RuntimeError(f"this {type(self).__name__} has already been entered")
        self._entered = True
        try:
            # aiter() of every source before the task group is entered: a source that
            # refuses to be iterated must not leave a task group open
            channel = self._channel = self._start()
        except BaseException:
            for pump in self._pumps:
                await pump.close()
            raise
        tg = CallGroup()
        await tg.__aenter__()
        self._tg = tg
        for pump in self._pumps:
            tg.start_soon(pump.run)
        return self._iterator(channel)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        tg = self._tg
        assert tg is not None
        tg.cancel_scope.cancel()  # the pumps close their sources as they stop
        try:
            return await tg.__aexit__(exc_type, exc_val, exc_tb)
        finally:
            for pump in self._pumps:
                await pump.close()  # the sources of pumps that never started


@final
class _ChannelIterator(AsyncIterator[T]):
    __slots__ = ("_channel",)

    def __init__(self, channel: _Channel[T]) -> None:
        self._channel = channel

    async def __anext__(self) -> T:
        await anyio.lowlevel.checkpoint_if_cancelled()
        try:
            return await self._channel.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


@final
class merge(_TaskOperator[T]):
    """Merge several sources into one stream, items in the order they arrive.

    ::

        async with streams.merge(ticks, events) as items:
            async for item in items:
                ...

    Each source is read by its own task, which holds at most one item while the consumer
    is busy (at most ``len(sources)`` more wait in between). The stream ends when every
    source is exhausted; with no sources it is empty.

    Leaving the block early (``break``, an exception, outside cancellation) cancels the
    reading tasks and closes every source (``aclose()``, shielded, at most 5 seconds). A
    source that raises cancels the others and the body; the block raises its exception
    bare (an ``ExceptionGroup`` if two or more failed on their own).

    Raises:
        TypeError: a source is not iterable.
    """

    __slots__ = ("_sources",)

    def __init__(self, *sources: AsyncIterable[T] | Iterable[T]) -> None:
        for i, source in builtins.enumerate(sources):
            _check_source(source, f"source {i}")
        super().__init__()
        self._sources = sources

    def _start(self) -> _Channel[Any]:
        channel = _Channel[T](max(len(self._sources), 1), len(self._sources))
        for source in self._sources:
            self._pump(source, channel)
        return channel

    def _iterator(self, channel: _Channel[Any]) -> AsyncIterator[T]:
        return _ChannelIterator(channel)


@final
class buffer(_TaskOperator[T]):
    """Read *source* ahead of the consumer, at most *size* items ahead.

    ::

        async with streams.buffer(rows, 100) as rows:
            async for row in rows:
                ...

    A task reads the source; at most *size* items wait for the consumer, plus the one
    being handed over. Leaving the block early cancels the reader and closes the source;
    an error of the source is raised from the block, bare.

    Raises:
        ValueError: ``size < 1``.
        TypeError: *source* is not iterable, or *size* is not an int.
    """

    __slots__ = ("_size", "_source")

    def __init__(self, source: AsyncIterable[T] | Iterable[T], size: int) -> None:
        _check_source(source)
        check_int(size, "size")
        super().__init__()
        self._source = source
        self._size = size

    def _start(self) -> _Channel[Any]:
        channel = _Channel[T](self._size, 1)
        self._pump(self._source, channel)
        return channel

    def _iterator(self, channel: _Channel[Any]) -> AsyncIterator[T]:
        return _ChannelIterator(channel)


@final
class _BatchIterator(AsyncIterator[list[T]]):
    __slots__ = ("_channel", "_size", "_timeout")

    def __init__(self, channel: _Channel[tuple[float, T]], size: int, timeout: float | None):
        self._channel = channel
        self._size = size
        self._timeout = timeout

    async def __anext__(self) -> list[T]:
        await anyio.lowlevel.checkpoint_if_cancelled()
        channel = self._channel
        try:
            stamp, first = await channel.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
        batch = [first]
        size = self._size
        timeout = self._timeout
        deadline = float("inf") if timeout is None else stamp + timeout
        with anyio.CancelScope(deadline=deadline):
            while len(batch) < size:
                await channel.wait_ready()  # cancelled at the deadline: nothing is lost
                try:
                    batch.append(channel.receive_nowait()[1])
                except anyio.EndOfStream:
                    break
        return batch


@final
class batch(_TaskOperator[list[T]]):
    """Group the items of *source* into lists of up to *size* items.

    ::

        async with streams.batch(events, 100, timeout=0.5) as batches:
            async for events in batches:
                await store(events)

    A batch is emitted when it has *size* items, or *timeout* seconds after its first item
    was read from the source (when a timeout is given), and at the end with what is left.
    A task reads the source, at most *size* items ahead of the consumer. Leaving the block
    early cancels it and closes the source; an error of the source is raised, bare.

    Raises:
        ValueError: ``size < 1`` or a negative timeout.
        TypeError: *source* is not iterable, or an option has the wrong type.
    """

    __slots__ = ("_size", "_source", "_timeout")

    def __init__(
        self, source: AsyncIterable[T] | Iterable[T], size: int, *, timeout: float | None = None
    ) -> None:
        from ._core import check_timeout

        _check_source(source)
        check_int(size, "size")
        check_timeout(timeout)
        super().__init__()
        self._source = source
        self._size = size
        self._timeout = timeout

    def _start(self) -> _Channel[Any]:
        channel = _Channel[tuple[float, T]](self._size, 1)
        self._pump(self._source, channel, True)
        return channel

    def _iterator(self, channel: _Channel[Any]) -> AsyncIterator[list[T]]:
        return _BatchIterator(channel, self._size, self._timeout)


@overload
def map(
    source: AsyncIterable[T] | Iterable[T],
    fn: Callable[[T], Awaitable[R]],
    *,
    limit: int = 1,
    ordered: bool = True,
) -> amap[T, R]: ...


@overload
def map(
    source: AsyncIterable[T] | Iterable[T],
    fn: Callable[[T], R],
    *,
    limit: int = 1,
    ordered: bool = True,
) -> amap[T, R]: ...


def map(
    source: AsyncIterable[T] | Iterable[T],
    fn: Callable[[T], Any],
    *,
    limit: int = 1,
    ordered: bool = True,
) -> amap[T, Any]:
    """Call *fn* on each item of *source*, at most *limit* at once: :class:`concur.amap`.

    ::

        async with streams.map(urls, fetch, limit=8) as pages:
            async for page in pages:
                ...

    The same as ``concur.amap(fn, source, limit=limit, ordered=ordered)`` (note the
    argument order, source first as in the other operators), with its back-pressure,
    early-exit, closing and error rules.

    Raises:
        TypeError: *fn* is not callable or *source* is not iterable.
        ValueError: ``limit < 1``.
    """
    _check_source(source)
    check_function(fn, "streams.map")
    return amap(fn, source, limit=limit, ordered=ordered)
