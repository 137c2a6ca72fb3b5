"""The bounded channel between producer tasks and one consumer, written once.

The stream operators' pumps (``merge``, ``buffer``, ``batch``) and ``amap``'s workers hand
their items to the consumer through a :class:`Channel`. ``amap`` reserves a place before it
reads an input item (so the items being called count against the bound too) and keeps
its reorder buffer in front of the channel; the pumps reserve and put at once
(:meth:`Channel.send`).
"""

from __future__ import annotations

import collections
from typing import Generic, TypeVar, final

import anyio

__all__ = ["Channel"]

T = TypeVar("T")


# Invariant, true whenever no task of the channel runs (between awaits):
#   0 <= len(items) <= taken <= capacity, where taken counts the places reserved by the
#   producers (an item being produced) plus the items waiting for the consumer.
# Every place freed (an item received, a reservation given back) sets at most one event of
# a producer waiting for room, which then checks again; a producer cancelled while it waits
# removes its event, or passes on the wake-up it got, so no freed place is lost. The
# consumer waits on its own event, set by every put and by the last sender's close; a
# cancelled wait loses nothing, since items only leave the deque in receive_nowait().
@final
class Channel(Generic[T]):
    """A bounded FIFO between producer tasks and one consumer; nothing is lost to cancellation.

    Args:
        capacity: the most places (reserved or holding an item) at once.
        senders: how many producers must :meth:`close_sender` before the end is seen.
        busy: what a second waiting consumer is told it is doing, for the
            ``anyio.BusyResourceError``.
    """

    __slots__ = ("_busy", "_receiver", "_space", "capacity", "items", "senders", "taken")

    def __init__(self, capacity: int, senders: int, busy: str = "receiving from this stream"):
        self.capacity = capacity
        self.senders = senders
        self.taken = 0
        self.items: collections.deque[T] = collections.deque()
        self._busy = busy
        self._receiver: anyio.Event | None = None
        self._space: collections.deque[anyio.Event] = collections.deque()

    # --- the producers' side ------------------------------------------------------------

    def try_reserve(self) -> bool:
        """Reserve a place if one is free at once; whether it did."""
        if self.taken < self.capacity:
            self.taken += 1
            return True
        return False

    async def reserve(self) -> None:
        """Wait for a free place and reserve it. Cancellation reserves nothing."""
        while self.taken >= self.capacity:
            space = anyio.Event()
            self._space.append(space)
            try:
                await space.wait()
            except BaseException:
                if space.is_set():
                    self._wake_producer()  # the place it was given goes to the next one
                else:
                    self._space.remove(space)
                raise
        self.taken += 1

    def unreserve(self) -> None:
        """Give back a reserved place that will hold no item."""
        self.taken -= 1
        self._wake_producer()

    def put(self, item: T) -> None:
        """Put *item* in a place reserved before (never waits)."""
        self.items.append(item)
        receiver = self._receiver  # _wake_consumer(), inline: this runs once per item
        if receiver is not None:
            self._receiver = None
            receiver.set()

    async def send(self, item: T) -> None:
        """Wait for a free place and put *item* there. Cancellation puts nothing."""
        if not self.try_reserve():
            await self.reserve()
        self.put(item)

    def close_sender(self) -> None:
        """One producer has finished; after the last one, the consumer sees the end."""
        self.senders -= 1
        if self.senders <= 0:
            self._wake_consumer()

    def _wake_producer(self) -> None:
        if self._space:
            self._space.popleft().set()

    def _wake_consumer(self) -> None:
        receiver = self._receiver
        if receiver is not None:
            self._receiver = None
            receiver.set()

    # --- the consumer's side ------------------------------------------------------------

    def ready(self) -> bool:
        """Whether an item (or the end) can be received without waiting."""
        return bool(self.items) or self.senders <= 0

    async def wait_ready(self) -> None:
        """Wait until :meth:`ready`. Cancellation loses nothing.

        Raises:
            anyio.BusyResourceError: another task is waiting already.
        """
        while not self.ready():
            if self._receiver is not None:
                raise anyio.BusyResourceError(self._busy)
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
        """The next item without waiting.

        Raises:
            anyio.EndOfStream: every sender closed and no item is left.
            anyio.WouldBlock: no item yet.
        """
        if not self.items:
            if self.senders <= 0:
                raise anyio.EndOfStream
            raise anyio.WouldBlock
        item = self.items.popleft()
        self.taken -= 1
        if self._space:  # _wake_producer(), inline: this runs once per item
            self._space.popleft().set()
        return item

    def clear(self) -> None:
        """Drop the waiting items (the consumer has gone); their places stay taken."""
        self.items.clear()
