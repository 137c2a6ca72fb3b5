"""RLock, Barrier and KeyedLimiter, on asyncio and trio."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest

import concur

# --- RLock ------------------------------------------------------------------------------------


async def test_rlock_is_reentrant_per_task() -> None:
    """The holder acquires again without waiting; the lock is free after as many releases."""
    lock = concur.RLock()
    async with lock:
        async with lock:
            await lock.acquire()
            lock.release()
        assert lock.locked()
    assert not lock.locked()


async def test_rlock_excludes_other_tasks_until_fully_released() -> None:
    """Another task waits until the holder has released every acquisition."""
    lock = concur.RLock()
    events: list[str] = []

    async def other() -> None:
        async with lock:
            events.append("other")

    await lock.acquire()
    await lock.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        await anyio.wait_all_tasks_blocked()
        lock.release()
        await anyio.wait_all_tasks_blocked()
        assert events == []  # one acquisition still held
        events.append("released")
        lock.release()
    assert events == ["released", "other"]
    assert not lock.locked()


async def test_rlock_waiters_are_served_in_order() -> None:
    """Tasks waiting for the lock get it first-come, first-served."""
    lock = concur.RLock()
    order: list[int] = []

    async def waiter(i: int) -> None:
        async with lock:
            order.append(i)

    async with anyio.create_task_group() as tg:
        await lock.acquire()
        for i in range(5):
            tg.start_soon(waiter, i)
            await anyio.wait_all_tasks_blocked()
        lock.release()
    assert order == [0, 1, 2, 3, 4]


async def test_rlock_release_by_a_non_owner_is_refused() -> None:
    """Releasing a lock another task holds, or a free lock, raises RuntimeError."""
    lock = concur.RLock()
    with pytest.raises(RuntimeError, match="does not hold"):
        lock.release()
    await lock.acquire()
    failed: list[BaseException] = []

    async def intruder() -> None:
        try:
            lock.release()
        except RuntimeError as exc:
            failed.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(intruder)
    assert len(failed) == 1
    assert lock.locked()
    lock.release()


async def test_rlock_cancelled_waiter_leaves_the_queue() -> None:
    """A task cancelled while it waits never holds the lock; the next waiter gets it."""
    lock = concur.RLock()
    got: list[str] = []

    async def waiter(name: str) -> None:
        async with lock:
            got.append(name)

    async with anyio.create_task_group() as tg:
        await lock.acquire()
        async with anyio.create_task_group() as leaving:
            leaving.start_soon(waiter, "cancelled")
            await anyio.wait_all_tasks_blocked()
            leaving.cancel_scope.cancel()
        tg.start_soon(waiter, "next")
        await anyio.wait_all_tasks_blocked()
        lock.release()
    assert got == ["next"]
    assert not lock.locked()


async def test_rlock_acquire_nowait() -> None:
    """acquire_nowait() re-enters for the holder and raises WouldBlock for another task."""
    lock = concur.RLock()
    lock.acquire_nowait()
    lock.acquire_nowait()
    blocked: list[bool] = []

    async def other() -> None:
        try:
            lock.acquire_nowait()
        except anyio.WouldBlock:
            blocked.append(True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
    assert blocked == [True]
    lock.release()
    lock.release()
    assert not lock.locked()


# --- Barrier ----------------------------------------------------------------------------------


async def test_barrier_releases_all_parties_with_distinct_indexes() -> None:
    """wait() returns once parties tasks wait, each with its own index; it is reusable."""
    barrier = concur.Barrier(3)
    indexes: list[int] = []

    async def party() -> None:
        indexes.append(await barrier.wait())

    for _ in range(2):  # cyclic: a second round works the same
        indexes.clear()
        async with anyio.create_task_group() as tg:
            tg.start_soon(party)
            tg.start_soon(party)
            await anyio.wait_all_tasks_blocked()
            assert indexes == []
            assert barrier.n_waiting == 2
            tg.start_soon(party)
        assert sorted(indexes) == [0, 1, 2]
        assert barrier.n_waiting == 0


async def test_barrier_cancelled_waiter_leaves_it() -> None:
    """A waiter cancelled before the trip leaves; the others wait for another party."""
    barrier = concur.Barrier(2)
    indexes: list[int] = []

    async def party() -> None:
        indexes.append(await barrier.wait())

    async with anyio.create_task_group() as tg:
        async with anyio.create_task_group() as leaving:
            leaving.start_soon(party)
            await anyio.wait_all_tasks_blocked()
            leaving.cancel_scope.cancel()
        assert barrier.n_waiting == 0
        tg.start_soon(party)
        await anyio.wait_all_tasks_blocked()
        assert indexes == []  # the cancelled one did not count
        tg.start_soon(party)
    assert sorted(indexes) == [0, 1]


async def test_barrier_of_one_party_never_waits() -> None:
    """With parties=1 every wait() returns 0 at once."""
    barrier = concur.Barrier(1)
    assert [await barrier.wait() for _ in range(3)] == [0, 0, 0]


def test_barrier_refuses_bad_parties() -> None:
    """parties must be an int of at least 1."""
    with pytest.raises(ValueError, match="parties"):
        concur.Barrier(0)
    with pytest.raises(TypeError, match="parties"):
        concur.Barrier(2.0)  # type: ignore[arg-type]


# --- KeyedLimiter -----------------------------------------------------------------------------


class Holders:
    """Tasks that hold slots of a KeyedLimiter until told to leave."""

    def __init__(self, limiter: concur.KeyedLimiter, tg: anyio.abc.TaskGroup) -> None:
        self.limiter = limiter
        self.tg = tg
        self.holding: list[str] = []  # names, in the order they got their slot
        self.leave: dict[str, anyio.Event] = {}

    async def _hold(self, name: str, key: str) -> None:
        async with self.limiter.hold(key):
            self.holding.append(name)
            await self.leave[name].wait()
            self.holding.remove(name)

    async def arrive(self, name: str, key: str) -> None:
        self.leave[name] = anyio.Event()
        self.tg.start_soon(self._hold, name, key)
        await anyio.wait_all_tasks_blocked()

    async def release(self, name: str) -> None:
        self.leave[name].set()
        await anyio.wait_all_tasks_blocked()


async def test_keyed_limiter_caps_each_key() -> None:
    """At most per_key holders per key; other keys are not held up."""
    limiter = concur.KeyedLimiter(2)
    async with anyio.create_task_group() as tg:
        h = Holders(limiter, tg)
        for name in ("a1", "a2", "a3", "b1"):
            await h.arrive(name, name[0])
        assert h.holding == ["a1", "a2", "b1"]
        assert (limiter.holders("a"), limiter.holders("b"), limiter.waiting) == (2, 1, 1)
        await h.release("a1")
        assert h.holding == ["a2", "b1", "a3"]
        for name in ("a2", "b1", "a3"):
            await h.release(name)
    assert (limiter.held, limiter.waiting, limiter.tracked_keys) == (0, 0, 0)


async def test_keyed_limiter_serves_a_key_first_come_first_served() -> None:
    """Waiters of one key get their slots in the order they arrived."""
    limiter = concur.KeyedLimiter(1)
    names = [f"k{i}" for i in range(6)]
    order: list[str] = []
    async with anyio.create_task_group() as tg:
        h = Holders(limiter, tg)
        for name in names:
            await h.arrive(name, "k")
        for _ in names:
            order.append(h.holding[0])
            await h.release(h.holding[0])
    assert order == names


async def test_keyed_limiter_total_slot_goes_to_longest_waiter_with_room() -> None:
    """When total blocks, a freed slot goes to the longest-waiting waiter whose key has
    room, skipping older waiters whose key is full."""
    limiter = concur.KeyedLimiter(1, total=2)
    async with anyio.create_task_group() as tg:
        h = Holders(limiter, tg)
        await h.arrive("a1", "a")
        await h.arrive("b1", "b")
        await h.arrive("a2", "a")  # waits for key a (and total)
        await h.arrive("c1", "c")  # waits for total
        await h.arrive("d1", "d")  # waits for total
        assert h.holding == ["a1", "b1"]
        await h.release("b1")  # a2's key is still full: c1, the next oldest, goes
        assert h.holding == ["a1", "c1"]
        await h.release("a1")  # a2 is the oldest waiter and its key now has room
        assert h.holding == ["c1", "a2"]
        await h.release("c1")
        assert h.holding == ["a2", "d1"]
        await h.release("a2")
        await h.release("d1")
    assert (limiter.held, limiter.tracked_keys) == (0, 0)


async def test_keyed_limiter_cancelled_waiter_leaves_no_trace() -> None:
    """A cancelled waiter takes no slot, and its key's state goes when nobody is left."""
    limiter = concur.KeyedLimiter(1, total=1)
    async with anyio.create_task_group() as tg:
        h = Holders(limiter, tg)
        await h.arrive("a1", "a")
        async with anyio.create_task_group() as leaving:
            leaving.start_soon(_hold_briefly, limiter, "b")
            await anyio.wait_all_tasks_blocked()
            assert (limiter.waiting, limiter.tracked_keys) == (1, 2)
            leaving.cancel_scope.cancel()
        assert (limiter.waiting, limiter.tracked_keys) == (0, 1)
        await h.arrive("c1", "c")
        await h.release("a1")
        assert h.holding == ["c1"]
        await h.release("c1")
    assert (limiter.held, limiter.waiting, limiter.tracked_keys) == (0, 0, 0)


async def test_keyed_limiter_cancelled_around_its_grant_stays_consistent() -> None:
    """A waiter cancelled right after it was given a slot either holds it and gives it
    back, or passes it on: the next waiter is served and nothing is left held."""
    limiter = concur.KeyedLimiter(1)
    first = limiter.hold("k")
    await first.__aenter__()
    got: list[str] = []

    async def waiter(name: str) -> None:
        async with limiter.hold("k"):
            got.append(name)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg, anyio.create_task_group() as doomed:
        doomed.start_soon(waiter, "doomed")
        tg.start_soon(waiter, "next")
        await anyio.wait_all_tasks_blocked()
        await first.__aexit__(None, None, None)  # grants "doomed" (no checkpoint)
        doomed.cancel_scope.cancel()  # ... which is cancelled before it resumes
    assert got[-1:] == ["next"]
    assert (limiter.held, limiter.tracked_keys) == (0, 0)


async def _hold_briefly(limiter: concur.KeyedLimiter, key: str) -> None:
    async with limiter.hold(key):
        await anyio.lowlevel.checkpoint()


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: concur.KeyedLimiter(0), ValueError, "per_key"),
        (lambda: concur.KeyedLimiter(2, total=0), ValueError, "total"),
        (lambda: concur.KeyedLimiter("2"), TypeError, "per_key"),  # type: ignore[arg-type]
        (lambda: concur.KeyedLimiter(1).hold(["a"]), TypeError, "hashable"),  # type: ignore[arg-type]
    ],
)
def test_keyed_limiter_refuses_bad_input(
    make: Callable[[], object], error: type[Exception], match: str
) -> None:
    """per_key or total below 1, or an unhashable key, raise naming what is wrong."""
    with pytest.raises(error, match=match):
        make()
