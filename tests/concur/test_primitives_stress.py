"""Randomized stress tests of RLock, Barrier and KeyedLimiter, on asyncio and trio.

Two kinds, each example a fresh event-loop run (``anyio.run``) bounded by ``fail_after``:

- **Model tests** (KeyedLimiter, Barrier) drive the primitive one step at a time (a task
  arrives, a holder leaves, a waiter is cancelled, or a holder leaves and a waiter is
  cancelled with no checkpoint in between), wait until every task is blocked, and compare
  who holds (or who passed, with which index) with a plain reference model of the
  documented rules: caps, first-come first-served per key, the freed overall slot to the
  longest-waiting waiter whose key has room, unique indexes per round. They also check the
  limiter's own invariants after each step and, at the end, that no waiter is left behind
  and no key's state remains.
- **Free-running tests** (KeyedLimiter, RLock) let many tasks race with random checkpoints
  and random cancellations, and check from inside that no cap (or the exclusion) is ever
  broken, that every task ends, and that nothing is left held.
"""

from __future__ import annotations

import random
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import concur
from concur._primitives import KeyedLimiter

RUN_SECONDS = 10.0  # an example that takes longer has hung
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])


async def settle() -> None:
    """Wait until every other task is blocked.

    A few checkpoints first let woken tasks run, so that anyio's asyncio
    ``wait_all_tasks_blocked`` (which sleeps 0.1 s whenever a task is still runnable)
    usually finds them all blocked at once; it alone decides.
    """
    for _ in range(5):
        await anyio.lowlevel.checkpoint()
    await anyio.wait_all_tasks_blocked()


# --- KeyedLimiter: model test ---------------------------------------------------------------

KEYS = "abc"
_arrive = st.tuples(st.just("arrive"), st.sampled_from(KEYS))
steps_st = st.lists(
    st.one_of(
        _arrive,  # arrivals weigh more, so that queues build up
        _arrive,
        _arrive,
        st.tuples(st.just("release"), st.integers(0, 30)),
        st.tuples(st.just("cancel"), st.integers(0, 30)),
        st.tuples(st.just("release+cancel"), st.integers(0, 30), st.integers(0, 30)),
    ),
    min_size=6,
    max_size=40,
)


class LimiterModel:
    """The documented rules of KeyedLimiter, written as plainly as possible."""

    def __init__(self, per_key: int, total: int | None) -> None:
        self.per_key = per_key
        self.total = total
        self.waiters: list[tuple[int, str]] = []  # arrival order
        self.holders: dict[int, str] = {}

    def _room(self, key: str) -> bool:
        per_key = sum(k == key for k in self.holders.values()) < self.per_key
        return per_key and (self.total is None or len(self.holders) < self.total)

    def settle(self) -> None:
        """Grant the longest-waiting waiter whose key has room (and is first of its key),
        again and again while one can be granted."""
        granted = True
        while granted:
            granted = False
            seen: set[str] = set()
            for i, key in self.waiters:
                if key not in seen and self._room(key):
                    self.waiters.remove((i, key))
                    self.holders[i] = key
                    granted = True
                    break
                seen.add(key)

    def arrive(self, i: int, key: str) -> None:
        self.waiters.append((i, key))
        self.settle()

    def leave(self, i: int) -> None:
        if i in self.holders:
            del self.holders[i]
        else:
            self.waiters = [(j, k) for j, k in self.waiters if j != i]
        self.settle()


def check_limiter_invariants(limiter: KeyedLimiter) -> None:
    """The invariants written above KeyedLimiter, checked from its private state."""
    keys = limiter._keys  # pyright: ignore[reportPrivateUsage]
    assert limiter.held == sum(s.holders for s in keys.values())
    assert limiter.total is None or limiter.held <= limiter.total
    for state in keys.values():
        assert state.holders or state.waiters, "the state of an idle key was kept"
        assert 0 <= state.holders <= limiter.per_key
        seqs = [w.seq for w in state.waiters]
        assert seqs == sorted(seqs)
        assert not any(w.granted for w in state.waiters)
        if state.waiters:  # nobody waits who could be granted
            assert state.holders == limiter.per_key or limiter.held == limiter.total


async def _limiter_model_run(per_key: int, total: int | None, steps: list[tuple[Any, ...]]) -> None:
    limiter = concur.KeyedLimiter(per_key, total=total)
    model = LimiterModel(per_key, total)
    holding: set[int] = set()
    holds: dict[int, Any] = {}
    scopes: dict[int, anyio.CancelScope] = {}
    done: set[int] = set()

    async def task(i: int, key: str) -> None:
        hold = holds[i] = limiter.hold(key)
        with scopes[i]:
            await hold.__aenter__()
            holding.add(i)
            try:
                await anyio.sleep_forever()
            finally:
                if i in holding:  # not released by the driver
                    holding.discard(i)
                    await hold.__aexit__(None, None, None)
        done.add(i)

    async def release(i: int) -> None:  # from the driver, with no checkpoint
        holding.discard(i)
        await holds[i].__aexit__(None, None, None)
        scopes[i].cancel()

    def pick(n: int, among: list[int]) -> int | None:
        return sorted(among)[n % len(among)] if among else None

    async with anyio.create_task_group() as tg:
        n = 0
        for step in steps:
            waiting = [i for i, _ in model.waiters]
            if step[0] == "arrive":
                scopes[n] = anyio.CancelScope()
                tg.start_soon(task, n, step[1])
                model.arrive(n, step[1])
                n += 1
            elif step[0] == "release" and (i := pick(step[1], list(model.holders))) is not None:
                await release(i)
                model.leave(i)
            elif step[0] == "cancel" and (i := pick(step[1], waiting)) is not None:
                scopes[i].cancel()
                model.leave(i)
            elif step[0] == "release+cancel":
                i = pick(step[1], list(model.holders))
                j = pick(step[2], waiting)
                if i is not None:
                    await release(i)
                    model.leave(i)
                if j is not None:
                    scopes[j].cancel()  # perhaps just granted, not yet resumed
                    model.leave(j)
            await settle()
            assert holding == set(model.holders), (step, holding, model.holders)
            assert limiter.waiting == len(model.waiters)
            check_limiter_invariants(limiter)
        while model.holders:  # holders leave in turn: every waiter gets a slot
            i = min(model.holders)
            await release(i)
            model.leave(i)
            await settle()
            assert holding == set(model.holders)
            check_limiter_invariants(limiter)
    assert not model.waiters
    assert (limiter.held, limiter.waiting, limiter.tracked_keys) == (0, 0, 0)


@BACKENDS
@SETTINGS
# the freed overall slot: to the oldest waiter whose key has room (b, not c; then c, not a)
@example(
    per_key=2,
    total=2,
    steps=[*(("arrive", k) for k in "aabca"), ("release", 0), ("release", 0)],
)
@given(
    per_key=st.integers(1, 3),
    total=st.one_of(st.none(), st.integers(1, 5)),
    steps=steps_st,
)
def test_keyed_limiter_follows_its_model(
    backend: str, per_key: int, total: int | None, steps: list[tuple[Any, ...]]
) -> None:
    """Step by step, KeyedLimiter grants exactly the slots its rules say."""

    async def main() -> None:
        with anyio.fail_after(RUN_SECONDS):
            await _limiter_model_run(per_key, total, steps)

    anyio.run(main, backend=backend)


# --- KeyedLimiter: free-running test --------------------------------------------------------


async def _limiter_race(seed: int, per_key: int, total: int | None, n_tasks: int) -> None:
    rng = random.Random(seed)
    limiter = concur.KeyedLimiter(per_key, total=total)
    inside: dict[str, int] = {}
    finished = 0

    async def checkpoints(n: int) -> None:
        for _ in range(n):
            await anyio.lowlevel.checkpoint()

    async def task(key: str, before: int, during: int) -> None:
        nonlocal finished
        await checkpoints(before)
        async with limiter.hold(key):
            inside[key] = inside.get(key, 0) + 1
            assert inside[key] <= per_key
            assert total is None or sum(inside.values()) <= total
            try:
                await checkpoints(during)
            finally:
                inside[key] -= 1
        finished += 1

    async def cancel_later(scope: anyio.CancelScope, after: int) -> None:
        await checkpoints(after)
        scope.cancel()

    cancelled = 0
    async with anyio.create_task_group() as tg:
        for _ in range(n_tasks):
            key = rng.choice(KEYS)
            if rng.random() < 0.3:
                scope = anyio.CancelScope()
                cancelled += 1

                async def cancellable(key: str = key, scope: anyio.CancelScope = scope) -> None:
                    with scope:
                        await task(key, rng.randrange(4), rng.randrange(6))

                tg.start_soon(cancellable)
                tg.start_soon(cancel_later, scope, rng.randrange(12))
            else:
                tg.start_soon(task, key, rng.randrange(4), rng.randrange(6))
    assert finished >= n_tasks - cancelled
    assert sum(inside.values()) == 0
    assert (limiter.held, limiter.waiting, limiter.tracked_keys) == (0, 0, 0)


@BACKENDS
@SETTINGS
@given(
    seed=st.integers(0, 2**32),
    per_key=st.integers(1, 3),
    total=st.one_of(st.none(), st.integers(1, 4)),
    n_tasks=st.integers(1, 30),
)
def test_keyed_limiter_racing_tasks_never_exceed_a_cap(
    backend: str, seed: int, per_key: int, total: int | None, n_tasks: int
) -> None:
    """Racing, randomly cancelled tasks never exceed a cap, all end, nothing stays held."""

    async def main() -> None:
        with anyio.fail_after(RUN_SECONDS):
            await _limiter_race(seed, per_key, total, n_tasks)

    anyio.run(main, backend=backend)


# --- Barrier: model test --------------------------------------------------------------------

barrier_steps_st = st.lists(
    st.one_of(st.just(("arrive",)), st.tuples(st.just("cancel"), st.integers(0, 30))),
    max_size=40,
)


async def _barrier_model_run(parties: int, steps: list[tuple[Any, ...]]) -> None:
    barrier = concur.Barrier(parties)
    waiting: list[int] = []  # the model: arrival order of this round
    expected: dict[int, int] = {}
    passed: dict[int, int] = {}
    scopes: dict[int, anyio.CancelScope] = {}

    async def party(i: int) -> None:
        with scopes[i]:
            passed[i] = await barrier.wait()

    async with anyio.create_task_group() as tg:
        for n, step in enumerate(steps):
            if step[0] == "arrive":
                scopes[n] = anyio.CancelScope()
                tg.start_soon(party, n)
                waiting.append(n)
                if len(waiting) == parties:
                    expected.update((i, index) for index, i in enumerate(waiting))
                    waiting.clear()
            elif waiting:
                i = waiting.pop(step[1] % len(waiting))
                scopes[i].cancel()
            await settle()
            assert passed == expected
            assert barrier.n_waiting == len(waiting)
        for i in waiting:  # nobody left behind: the rest are cancelled
            scopes[i].cancel()
    assert passed == expected
    assert barrier.n_waiting == 0


@BACKENDS
@SETTINGS
@given(parties=st.integers(1, 4), steps=barrier_steps_st)
def test_barrier_follows_its_model(
    backend: str, parties: int, steps: list[tuple[Any, ...]]
) -> None:
    """Step by step, the barrier trips exactly when its model does, with the same indexes."""

    async def main() -> None:
        with anyio.fail_after(RUN_SECONDS):
            await _barrier_model_run(parties, steps)

    anyio.run(main, backend=backend)


# --- RLock: free-running test ---------------------------------------------------------------


async def _rlock_race(seed: int, n_tasks: int) -> None:
    rng = random.Random(seed)
    lock = concur.RLock()
    owner: list[int] = []  # the task in the critical section, if any
    finished = 0

    async def nested(me: int, depth: int) -> None:
        async with lock:
            if depth == 0:
                assert owner == []
                owner.append(me)
            assert owner == [me]
            for _ in range(rng.randrange(3)):
                await anyio.lowlevel.checkpoint()
            if depth < 3 and rng.random() < 0.5:
                await nested(me, depth + 1)
            assert owner == [me]
            if depth == 0:
                owner.clear()

    async def task(me: int, scope: anyio.CancelScope) -> None:
        nonlocal finished
        with scope:
            for _ in range(rng.randrange(3)):
                await anyio.lowlevel.checkpoint()
            try:
                await nested(me, 0)
            finally:
                if owner == [me]:  # cancelled inside: the lock is released on the way out
                    owner.clear()
        finished += 1

    async def cancel_later(scope: anyio.CancelScope, after: int) -> None:
        for _ in range(after):
            await anyio.lowlevel.checkpoint()
        scope.cancel()

    async with anyio.create_task_group() as tg:
        for me in range(n_tasks):
            scope = anyio.CancelScope()
            tg.start_soon(task, me, scope)
            if rng.random() < 0.3:
                tg.start_soon(cancel_later, scope, rng.randrange(10))
    assert finished == n_tasks
    assert not lock.locked()


@BACKENDS
@SETTINGS
@given(seed=st.integers(0, 2**32), n_tasks=st.integers(1, 20))
def test_rlock_racing_tasks_keep_exclusion(backend: str, seed: int, n_tasks: int) -> None:
    """Racing tasks re-entering at random, some cancelled, never share the lock."""

    async def main() -> None:
        with anyio.fail_after(RUN_SECONDS):
            await _rlock_race(seed, n_tasks)

    anyio.run(main, backend=backend)
