"""Synchronisation primitives anyio lacks: :class:`RLock`, :class:`Barrier` and
:class:`KeyedLimiter`, on asyncio and trio alike.

They are written on anyio's public primitives (``Lock``, ``Event``) and its low-level
checkpoints, and follow anyio's conventions: an async method checkpoints, a cancelled wait
leaves no trace, a release is sync. None of them is thread-safe: use them from the tasks of
one event loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from types import TracebackType
from typing import Final, final

import anyio
import anyio.lowlevel

from ._core.checks import check_int

__all__ = ["Barrier", "KeyedLimiter", "RLock"]


# --- RLock ------------------------------------------------------------------------------------


@final
class RLock:
    """A lock that the task holding it may acquire again (re-entrant per task).

    The task that holds it may ``acquire()`` it again (``async with`` nested), and must
    ``release()`` it as many times; the lock is free once the last release is made. Other
    tasks wait in first-come, first-served order, as for ``anyio.Lock``. A task is
    identified by ``anyio.get_current_task().id``: a thread or a task spawned by the holder
    is another task, and waits.

    Example::

        lock = concur.RLock()

        async def transfer():
            async with lock:
                await audit()  # may take the same lock again

        async def audit():
            async with lock:
                ...
    """

    # Invariant: _owner is None exactly when _count == 0; while _owner is set, _count >= 1
    # is the number of acquisitions by that task not yet released, and _lock (a FIFO
    # anyio.Lock) is held by that task. Only the owner changes _count, and every change
    # happens with no await between the check of _owner and the update.

    __slots__ = ("_count", "_lock", "_owner")

    def __init__(self) -> None:
        self._lock: Final = anyio.Lock()
        self._owner: int | None = None
        self._count = 0

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def locked(self) -> bool:
        """Whether some task holds the lock."""
        return self._owner is not None

    async def acquire(self) -> None:
        """Acquire the lock, waiting while another task holds it.

        A re-entry by the holder does not wait (it checkpoints). Cancellation: a task
        cancelled while it waits does not acquire the lock and leaves the queue; a
        re-entry that is cancelled at its checkpoint is not counted.
        """
        me = anyio.get_current_task().id
        if self._owner == me:
            await anyio.lowlevel.checkpoint()
            self._count += 1
            return
        await self._lock.acquire()
        self._owner = me
        self._count = 1

    def acquire_nowait(self) -> None:
        """Acquire the lock without waiting.

        Raises:
            anyio.WouldBlock: another task holds it.
        """
        me = anyio.get_current_task().id
        if self._owner == me:
            self._count += 1
            return
        self._lock.acquire_nowait()
        self._owner = me
        self._count = 1

    def release(self) -> None:
        """Release one acquisition; the lock is free when the holder has released it as
        many times as it acquired it.

        Raises:
            RuntimeError: the current task does not hold the lock.
        """
        if self._owner is None or self._owner != anyio.get_current_task().id:
            raise RuntimeError(
                "RLock.release() called by a task that does not hold the lock: only the "
                "task that acquired it can release it"
            )
        self._count -= 1
        if self._count == 0:
            self._owner = None
            self._lock.release()


# --- Barrier ----------------------------------------------------------------------------------


@final
class _Arrival:
    """One task waiting at a barrier: its index once the barrier has tripped."""

    __slots__ = ("index",)

    def __init__(self) -> None:
        self.index: int | None = None


@final
class _Generation:
    """The tasks waiting for one trip of a barrier, and the event that releases them."""

    __slots__ = ("arrivals", "tripped")

    def __init__(self) -> None:
        self.arrivals: list[_Arrival] = []
        self.tripped = anyio.Event()


@final
class Barrier:
    """A cyclic barrier: ``wait()`` returns once *parties* tasks are waiting.

    When the last of *parties* tasks calls :meth:`wait`, all of them are released, each
    with its own index in ``range(parties)`` (their order of arrival), and the barrier is
    ready for the next round at once (it is reusable). A task cancelled while it waits
    leaves the barrier; the others keep waiting for a task to take its place (as
    ``asyncio.Barrier`` does; there is no broken state).

    Args:
        parties: the number of tasks that must wait together, at least 1.

    Example::

        barrier = concur.Barrier(3)

        async def worker():
            await load()
            index = await barrier.wait()  # all three have loaded
            if index == 0:
                announce()
    """

    # Invariant: _generation.arrivals holds, in arrival order, the tasks that called wait()
    # since the last trip and are still waiting (a cancelled one removes itself before the
    # trip); between calls there are fewer than `parties` of them, because the arrival that
    # completes the set trips the barrier at once, with no await in between: it gives every
    # arrival its index, sets the generation's event and starts a new, empty generation.
    # An arrival whose index is set has passed the barrier, even if it is cancelled later.

    __slots__ = ("_generation", "_parties")

    def __init__(self, parties: int) -> None:
        self._parties: Final = check_int(parties, "parties", minimum=1)
        self._generation = _Generation()

    @property
    def parties(self) -> int:
        """The number of tasks that must wait together."""
        return self._parties

    @property
    def n_waiting(self) -> int:
        """The number of tasks waiting now."""
        return len(self._generation.arrivals)

    async def wait(self) -> int:
        """Wait until *parties* tasks are waiting, then return this task's index.

        Returns:
            An index in ``range(parties)``, unique in this round: the task's place in the
            order of arrival (the last to arrive gets ``parties - 1``).

        Cancellation: a task cancelled before the barrier trips leaves it, and raises the
        cancellation; the others keep waiting. A task cancelled after the barrier tripped
        (before it resumed) counts as having passed: the others are released all the same,
        and it raises the cancellation.
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        generation = self._generation
        arrival = _Arrival()
        generation.arrivals.append(arrival)
        if len(generation.arrivals) == self._parties:
            for index, each in enumerate(generation.arrivals):
                each.index = index
            self._generation = _Generation()
            generation.tripped.set()
            await anyio.lowlevel.cancel_shielded_checkpoint()
            assert arrival.index is not None
            return arrival.index
        try:
            await generation.tripped.wait()
        except BaseException:
            if arrival.index is None:  # not tripped: leave the barrier
                generation.arrivals.remove(arrival)
            raise
        assert arrival.index is not None
        return arrival.index


# --- KeyedLimiter -----------------------------------------------------------------------------


@final
class _Waiter:
    """A task waiting for a slot of one key; *granted* once it holds the slot."""

    __slots__ = ("event", "granted", "key", "seq")

    def __init__(self, key: Hashable, seq: int) -> None:
        self.key: Final = key
        self.seq: Final = seq  # arrival order, across all keys
        self.event: Final = anyio.Event()
        self.granted = False


@final
class _KeyState:
    """The holders and waiters of one key."""

    __slots__ = ("holders", "waiters")

    def __init__(self) -> None:
        self.holders = 0
        self.waiters: deque[_Waiter] = deque()


@final
class KeyedLimiter:
    """At most *per_key* holders per key, and at most *total* holders overall, FIFO-fair.

    ``async with limiter.hold(key):`` waits until the key has a free slot (and, with
    *total*, until fewer than *total* slots are held over all keys), then holds one slot
    for the block. Waiters of one key are served first-come, first-served. When *total*
    is what blocks, a freed slot goes to the longest-waiting waiter whose key has room, so
    a busy key cannot starve the others. A key takes memory only while it has holders or
    waiters: its state is dropped when both are gone, so any number of distinct keys may
    pass through (one per host, user or file, say).

    Keys are compared by hash and equality, as dict keys are.

    Args:
        per_key: the most holders one key may have at once, at least 1.
        total: the most holders over all keys at once (at least 1), or ``None`` for no
            overall bound.

    Example::

        limiter = concur.KeyedLimiter(2, total=10)  # 2 per host, 10 overall

        async def fetch(client, url):
            async with limiter.hold(urlsplit(url).hostname):
                return await client.get(url)
    """

    # Invariants, true whenever no task of this limiter is running:
    # 1. _keys holds exactly the keys with holders or waiters; for each, 0 <= holders <=
    #    per_key, and waiters is in arrival (seq) order and holds only waiters not granted.
    # 2. _held == the sum of holders over _keys, and _held <= total (when total is set).
    # 3. No waiter can be granted: for each key with waiters, holders == per_key or
    #    _held == total. (So a new arrival may take a slot at once only if its key has no
    #    waiters, and a freed slot is granted before anything else happens.)
    # A grant counts the waiter as a holder at once (before it resumes) and removes it from
    # its key's queue; a granted waiter that is cancelled before it resumes gives its slot
    # back through the same release path.

    __slots__ = ("_held", "_keys", "_per_key", "_seq", "_total")

    def __init__(self, per_key: int, *, total: int | None = None) -> None:
        self._per_key: Final = check_int(per_key, "per_key", minimum=1)
        self._total: Final = None if total is None else check_int(total, "total", minimum=1)
        self._keys: dict[Hashable, _KeyState] = {}
        self._held = 0
        self._seq = 0

    @property
    def per_key(self) -> int:
        """The most holders one key may have at once."""
        return self._per_key

    @property
    def total(self) -> int | None:
        """The most holders overall (``None``: no overall bound)."""
        return self._total

    @property
    def held(self) -> int:
        """The number of slots held now, over all keys."""
        return self._held

    @property
    def waiting(self) -> int:
        """The number of tasks waiting for a slot, over all keys."""
        return sum(len(state.waiters) for state in self._keys.values())

    @property
    def tracked_keys(self) -> int:
        """The number of keys with holders or waiters (the others take no memory)."""
        return len(self._keys)

    def holders(self, key: Hashable) -> int:
        """The number of slots *key* holds now."""
        state = self._keys.get(key)
        return 0 if state is None else state.holders

    def hold(self, key: Hashable) -> _Hold:
        """An async context manager that holds one slot of *key* for its block.

        Entering it waits for a slot (see the class). Cancellation: a task cancelled while
        it waits takes no slot and leaves the queue; the slot is released when the block
        exits, however it exits.

        Raises:
            TypeError: *key* is not hashable.
        """
        try:
            hash(key)
        except TypeError:
            raise TypeError(
                f"KeyedLimiter.hold() takes a hashable key (as a dict key), got "
                f"{type(key).__name__} {key!r}: use a tuple or a string instead"
            ) from None
        return _Hold(self, key)

    def _try_take(self, key: Hashable) -> bool:
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState()
        if state.waiters or state.holders >= self._per_key:
            return False
        if self._total is not None and self._held >= self._total:
            return False
        state.holders += 1
        self._held += 1
        return True

    async def _acquire(self, key: Hashable) -> None:
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._try_take(key):
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return
        self._seq += 1
        waiter = _Waiter(key, self._seq)
        state = self._keys[key]
        state.waiters.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:
                self._release(key)
            else:
                state.waiters.remove(waiter)
                self._drop_if_idle(key, state)
            raise

    def _grant(self, state: _KeyState) -> None:
        waiter = state.waiters.popleft()
        state.holders += 1
        self._held += 1
        waiter.granted = True
        waiter.event.set()

    def _release(self, key: Hashable) -> None:
        state = self._keys[key]
        state.holders -= 1
        self._held -= 1
        total_was_full = self._total is not None and self._held + 1 == self._total
        if total_was_full:
            # the freed overall slot goes to the longest-waiting waiter whose key has room
            best: _KeyState | None = None
            for other in self._keys.values():
                if (
                    other.waiters
                    and other.holders < self._per_key
                    and (best is None or other.waiters[0].seq < best.waiters[0].seq)
                ):
                    best = other
            if best is not None:
                self._grant(best)
        elif state.waiters:
            # only this key's room changed: its first waiter takes it
            self._grant(state)
        self._drop_if_idle(key, state)

    def _drop_if_idle(self, key: Hashable, state: _KeyState) -> None:
        if state.holders == 0 and not state.waiters:
            del self._keys[key]


@final
class _Hold:
    """``async with limiter.hold(key):``: one slot of *key* for the block."""

    __slots__ = ("_entered", "_key", "_limiter")

    def __init__(self, limiter: KeyedLimiter, key: Hashable) -> None:
        self._limiter: Final = limiter
        self._key: Final = key
        self._entered = False

    async def __aenter__(self) -> None:
        if self._entered:
            raise RuntimeError("this hold() is already entered: call limiter.hold(key) again")
        await self._limiter._acquire(self._key)  # pyright: ignore[reportPrivateUsage]
        self._entered = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._entered:
            raise RuntimeError(
                "this hold() was not entered: use it as async with limiter.hold(key)"
            )
        self._entered = False
        self._limiter._release(self._key)  # pyright: ignore[reportPrivateUsage]
