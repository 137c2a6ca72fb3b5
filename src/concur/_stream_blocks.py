"""The stream operators that run tasks: ``merge``, ``buffer``, ``batch`` and ``map``.

They are async context managers over a task group (a
:class:`~concur._core.closing.GroupBlock`), so the consumer's body runs inside the group's
scope, exactly as in a nursery block. They are never async generators that yield inside a
task group (which corrupts trio's cancellation). Pump tasks copy each source into a
bounded :class:`~concur._core.channel.Channel`, which the consumer reads.

Their names are lowercase, as ``concur.amap`` and ``concur.scope``: each is used as a call
that opens a block (``async with streams.merge(a, b) as items``), like anyio's
``create_task_group()`` and trio's ``open_nursery()``, which are functions; they stay
classes (public API) so that ``streams.merge[T]`` is also a type for annotations.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar, final, overload

import anyio
import anyio.lowlevel

from ._core import check_function, check_int, check_timeout
from ._core.channel import Channel
from ._core.closing import GroupBlock, aclose_bounded
from ._map import amap
from ._streams import aiter_of, check_source

__all__ = ["batch", "buffer", "map", "merge"]

T = TypeVar("T")
R = TypeVar("R")


@final
class _Pump(Generic[T]):
    """Copies one source into a channel, in a task; closes the source, once, whatever happens.

    Only an exhausted source ends the pump's share of the stream: a pump that fails (or is
    cancelled) leaves the consumer waiting, so that the task group's cancellation, not an
    early ``StopAsyncIteration``, is what the consumer sees.
    """

    __slots__ = ("_channel", "_closed", "_it", "_stamp")

    def __init__(
        self, source: AsyncIterable[T] | Iterable[T], channel: Channel[Any], stamp: bool
    ) -> None:
        self._it = aiter_of(source)
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
            await aclose_bounded(self._it)


# --- the operators ----------------------------------------------------------------


class _TaskOperator(GroupBlock, Generic[T]):
    """The base of the operators that run pump tasks in a task group."""

    __slots__ = ("_channel", "_entered", "_pumps")

    def __init__(self) -> None:
        super().__init__()
        self._pumps: list[_Pump[Any]] = []
        self._channel: Channel[Any] | None = None
        self._entered = False

    def _start(self) -> Channel[Any]:
        """Make the channel and its pumps (with :meth:`_pump`); nothing runs yet."""
        raise NotImplementedError

    def _pump(
        self,
        source: AsyncIterable[Any] | Iterable[Any],
        channel: Channel[Any],
        stamp: bool = False,
    ) -> None:
        self._pumps.append(_Pump(source, channel, stamp))

    def _iterator(self, channel: Channel[Any]) -> AsyncIterator[T]:
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
            await self._close_rest()
            raise
        tg = await self._open_group()
        for pump in self._pumps:
            tg.start_soon(pump.run)
        return self._iterator(channel)

    async def _close_rest(self) -> None:
        # the pumps that ran closed their sources as they stopped; these are the sources
        # of pumps that never started
        for pump in self._pumps:
            await pump.close()


@final
class _ChannelIterator(AsyncIterator[T]):
    __slots__ = ("_channel",)

    def __init__(self, channel: Channel[T]) -> None:
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
            check_source(source, f"source {i}")
        super().__init__()
        self._sources = sources

    def _start(self) -> Channel[Any]:
        channel = Channel[T](max(len(self._sources), 1), len(self._sources))
        for source in self._sources:
            self._pump(source, channel)
        return channel

    def _iterator(self, channel: Channel[Any]) -> AsyncIterator[T]:
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
        check_source(source)
        check_int(size, "size")
        super().__init__()
        self._source = source
        self._size = size

    def _start(self) -> Channel[Any]:
        channel = Channel[T](self._size, 1)
        self._pump(self._source, channel)
        return channel

    def _iterator(self, channel: Channel[Any]) -> AsyncIterator[T]:
        return _ChannelIterator(channel)


@final
class _BatchIterator(AsyncIterator[list[T]]):
    __slots__ = ("_channel", "_size", "_timeout")

    def __init__(self, channel: Channel[tuple[float, T]], size: int, timeout: float | None):
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
        check_source(source)
        check_int(size, "size")
        check_timeout(timeout)
        super().__init__()
        self._source = source
        self._size = size
        self._timeout = timeout

    def _start(self) -> Channel[Any]:
        channel = Channel[tuple[float, T]](self._size, 1)
        self._pump(self._source, channel, True)
        return channel

    def _iterator(self, channel: Channel[Any]) -> AsyncIterator[list[T]]:
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
    check_source(source)
    check_function(fn, "streams.map")
    return amap(fn, source, limit=limit, ordered=ordered)
