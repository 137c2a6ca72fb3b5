"""The retry, timeout and limit decorators, on asyncio and trio."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import concur

# When a test fails, hypothesis's pytest plugin imports libcst to suggest a patch, and that
# import warns; under warnings-as-errors the report would end in an INTERNALERROR that hides
# the falsifying example. Import it now (as test_stress.py does).
with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401


class Flaky(Exception):
    """The failure a decorated function raises on purpose."""


def pauses(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The pauses retry asked for, in order, from its DEBUG records."""
    return [
        float(record.args[1])  # type: ignore[index, arg-type]
        for record in caplog.records
        if record.name == "concur" and record.msg.startswith("retrying ")
    ]


# --- retry: counts and the last error -------------------------------------------------------


async def test_async_retry_until_success() -> None:
    """A function that fails twice then succeeds is called three times and returns."""
    calls = 0

    @concur.retry(attempts=3, delay=0)
    async def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        await anyio.lowlevel.checkpoint()
        if calls < 3:
            raise Flaky(calls)
        return x * 10

    assert inspect.iscoroutinefunction(flaky)
    assert flaky.__name__ == "flaky"
    assert await flaky(4) == 40
    assert calls == 3


async def test_async_retry_raises_the_last_error() -> None:
    """When every attempt fails, the error of the last attempt propagates, unchained."""
    raised: list[Flaky] = []

    @concur.retry(attempts=4, delay=0, jitter=0)
    async def always() -> None:
        raised.append(Flaky(len(raised) + 1))
        raise raised[-1]

    with pytest.raises(Flaky) as caught:
        await always()
    assert len(raised) == 4
    assert caught.value is raised[-1]
    assert caught.value.__context__ is None


def test_sync_retry_stays_sync_and_counts() -> None:
    """A decorated sync function stays sync, is retried *attempts* times (waiting with
    time.sleep outside a worker thread) and raises its last error."""
    calls = 0

    @concur.retry(attempts=3, delay=0.001)
    def always(x: int) -> int:
        nonlocal calls
        calls += 1
        raise Flaky(calls)

    assert not inspect.iscoroutinefunction(always)
    assert always.__name__ == "always"
    with pytest.raises(Flaky, match="3"):
        always(1)
    assert calls == 3


async def test_sync_retry_in_a_worker_thread_succeeds() -> None:
    """A decorated sync function run by concur.to_thread retries in its thread."""
    calls = 0

    @concur.retry(attempts=5, delay=0.001)
    def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Flaky
        return threading.get_ident()

    assert await concur.to_thread(flaky) != threading.get_ident()
    assert calls == 3


async def test_only_on_is_retried() -> None:
    """An exception outside *on* propagates at once; a group is matched as a whole."""
    calls = 0

    @concur.retry(attempts=5, on=KeyError, delay=0)
    async def wrong_kind(exc: Exception) -> None:
        nonlocal calls
        calls += 1
        raise exc

    with pytest.raises(ValueError, match="nope"):
        await wrong_kind(ValueError("nope"))
    assert calls == 1
    with pytest.RaisesGroup(KeyError):
        await wrong_kind(ExceptionGroup("g", [KeyError("k")]))
    assert calls == 2
    calls = 0
    with pytest.raises(KeyError):
        await wrong_kind(KeyError("k"))
    assert calls == 5


# --- retry: never cancellation, interrupts ----------------------------------------------------


async def test_cancellation_is_never_retried_even_on_base_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With on=BaseException, a cancelled call is not retried (nor even logged as one to
    retry): the cancellation propagates."""
    caplog.set_level(logging.DEBUG, logger="concur")
    calls = 0

    @concur.retry(attempts=5, on=(BaseException,), delay=0)
    async def blocked() -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep_forever()

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:
            group.start_soon(blocked)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
    assert scope.cancelled_caught
    assert calls == 1
    assert pauses(caplog) == []


async def test_sync_cancellation_in_a_thread_is_never_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A sync function whose check_cancelled() raises the cancellation is not retried."""
    caplog.set_level(logging.DEBUG, logger="concur")
    calls = 0
    started = anyio.Event()
    token = anyio.lowlevel.current_token()

    @concur.retry(attempts=5, on=BaseException, delay=0)
    def cooperative() -> None:
        nonlocal calls
        calls += 1
        anyio.from_thread.run_sync(started.set, token=token)
        while True:
            concur.check_cancelled()
            threading.Event().wait(0.001)

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:
            group.start_soon(concur.to_thread, cooperative)
            await started.wait()
            scope.cancel()
    assert scope.cancelled_caught
    assert calls == 1
    assert pauses(caplog) == []


@pytest.mark.parametrize(
    "make",
    [
        KeyboardInterrupt,
        SystemExit,
        GeneratorExit,
        asyncio.CancelledError,
        lambda: BaseExceptionGroup("g", [ValueError(), KeyboardInterrupt()]),
        lambda: BaseExceptionGroup("g", [asyncio.CancelledError()]),
    ],
    ids=["KeyboardInterrupt", "SystemExit", "GeneratorExit", "CancelledError", "group", "cgroup"],
)
def test_interrupts_are_never_retried(make: Any) -> None:
    """KeyboardInterrupt, SystemExit, GeneratorExit, a cancellation and groups holding one
    propagate at the first attempt, whatever *on* says."""
    calls = 0

    @concur.retry(attempts=3, on=BaseException, delay=0)
    def interrupted() -> None:
        nonlocal calls
        calls += 1
        raise make()

    with pytest.raises(BaseException) as caught:
        interrupted()
    assert type(caught.value) is type(make())
    assert calls == 1


# --- retry: the wait ---------------------------------------------------------------------------


async def test_cancelling_the_backoff_wait_ends_it_at_once() -> None:
    """Cancelling the caller during an hour-long wait between attempts ends the call now
    (the test's own bound is the only time bound)."""
    calls = 0

    @concur.retry(attempts=2, delay=3600, max_delay=3600)
    async def fail_once() -> None:
        nonlocal calls
        calls += 1
        raise Flaky

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:
            group.start_soon(fail_once)
            await anyio.wait_all_tasks_blocked()
            assert calls == 1
            scope.cancel()
    assert scope.cancelled_caught
    assert calls == 1


async def test_cancelling_a_sync_retry_in_a_thread_during_its_wait() -> None:
    """A sync retry running in concur.to_thread stops its hour-long wait when the caller
    is cancelled: the thread ends and the cancellation propagates."""
    calls = 0
    failed = threading.Event()

    @concur.retry(attempts=2, delay=3600, max_delay=3600)
    def fail_once() -> None:
        nonlocal calls
        calls += 1
        failed.set()
        raise Flaky

    ended = False
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:

            async def run() -> None:
                nonlocal ended
                try:
                    await concur.to_thread(fail_once)
                finally:
                    ended = True

            group.start_soon(run)
            while not failed.is_set():
                await anyio.sleep(0.001)
            scope.cancel()
    assert scope.cancelled_caught
    assert ended
    assert calls == 1


async def test_delays_grow_by_backoff_with_jitter_within_bounds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The n-th pause is in [d, d * (1 + jitter)] for d = min(delay * backoff**(n-1),
    max_delay), at least d really elapses, and jitter does lengthen the pauses."""
    caplog.set_level(logging.DEBUG, logger="concur")
    starts: list[float] = []

    @concur.retry(attempts=5, delay=0.01, backoff=2.0, max_delay=0.03, jitter=0.5)
    async def always() -> None:
        starts.append(anyio.current_time())
        raise Flaky

    with pytest.raises(Flaky):
        await always()
    bases = [0.01, 0.02, 0.03, 0.03]
    asked = pauses(caplog)
    assert len(asked) == len(bases) == len(starts) - 1
    for base, pause, before, after in zip(bases, asked, starts[:-1], starts[1:], strict=True):
        assert base <= pause <= base * 1.5
        assert after - before >= base - 1e-3  # the loop's clock resolution
    assert any(pause > base for base, pause in zip(bases, asked, strict=True))


async def test_zero_delay_and_zero_jitter_are_exact(caplog: pytest.LogCaptureFixture) -> None:
    """delay=0 retries at once; jitter=0 makes every pause exactly its base; max_delay
    caps every pause."""
    caplog.set_level(logging.DEBUG, logger="concur")

    @concur.retry(attempts=3, delay=0)
    async def immediate() -> None:
        raise Flaky

    with pytest.raises(Flaky):
        await immediate()
    assert pauses(caplog) == [0.0, 0.0]
    caplog.clear()

    @concur.retry(attempts=4, delay=0.001, backoff=3.0, jitter=0)
    def exact() -> None:
        raise Flaky

    with pytest.raises(Flaky):
        await concur.to_thread(exact)
    assert pauses(caplog) == [0.001, 0.001 * 3, 0.001 * 3 * 3]
    caplog.clear()

    @concur.retry(attempts=3, delay=5, max_delay=0.001, jitter=0)
    async def capped() -> None:
        raise Flaky

    with pytest.raises(Flaky):
        await capped()
    assert pauses(caplog) == [0.001, 0.001]  # max_delay caps the first wait too


# --- timeout -------------------------------------------------------------------------------


async def test_timeout_raises_timeout_error_and_passes_results() -> None:
    """A call that outlives *seconds* is cancelled and raises TimeoutError; a quick one
    returns its result; each call has its own deadline."""
    cancelled = False

    @concur.timeout(0.01)
    async def slow(forever: bool) -> str:
        nonlocal cancelled
        if not forever:
            return "quick"
        try:
            await anyio.sleep_forever()
        finally:
            cancelled = True
        return "unreachable"  # pragma: no cover

    assert inspect.iscoroutinefunction(slow)
    with pytest.raises(TimeoutError):
        await slow(True)
    assert cancelled
    assert await slow(False) == "quick"


async def test_timeout_lets_outside_cancellation_through() -> None:
    """Cancelling the caller raises the cancellation, not TimeoutError."""

    @concur.timeout(3600)
    async def blocked() -> None:
        await anyio.sleep_forever()

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:
            group.start_soon(blocked)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
    assert scope.cancelled_caught


# --- limit ---------------------------------------------------------------------------------


class Counter:
    """Calls running at once, and the most seen (on one loop thread: no lock needed)."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.total = 0

    async def hold(self, steps: int) -> None:
        self.now += 1
        self.total += 1
        self.peak = max(self.peak, self.now)
        try:
            for _ in range(steps):
                await anyio.lowlevel.checkpoint()
        finally:
            self.now -= 1


async def limited_load(n: int, plan: list[tuple[int, int | None]]) -> Counter:
    """Run one call per *plan* entry (its checkpoints, and after how many checkpoints of
    a sibling it is cancelled, if it is) of a function limited to *n*."""
    counter = Counter()

    @concur.limit(n)
    async def work(steps: int) -> None:
        await counter.hold(steps)

    async def call(steps: int, cancel_after: int | None) -> None:
        with anyio.CancelScope() as scope:
            if cancel_after is not None:

                async def cancel() -> None:
                    for _ in range(cancel_after):
                        await anyio.lowlevel.checkpoint()
                    scope.cancel()

                group.start_soon(cancel)
            await work(steps)

    async with anyio.create_task_group() as group:
        for steps, cancel_after in plan:
            group.start_soon(call, steps, cancel_after)
    assert counter.now == 0
    return counter


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 5),
    plan=st.lists(
        st.tuples(st.integers(0, 6), st.none() | st.integers(0, 8)), min_size=1, max_size=40
    ),
)
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_limit_is_never_exceeded_under_random_load(
    backend: str, n: int, plan: list[tuple[int, int | None]]
) -> None:
    """Under a random load (random durations, callers cancelled at random moments, while
    waiting for a token or while running), at most *n* calls ever run at once, and *n* do
    when there is enough work and nobody is cancelled."""

    async def main() -> Counter:
        with anyio.fail_after(10):
            return await limited_load(n, plan)

    counter = anyio.run(main, backend=backend)
    assert counter.peak <= n
    if len(plan) >= n and all(steps > 0 and cancel is None for steps, cancel in plan):
        assert counter.peak == n


async def test_limit_on_a_shared_limiter_caps_every_function() -> None:
    """Two functions on one CapacityLimiter share its tokens; a caller cancelled before it
    gets a token takes none."""
    limiter = anyio.CapacityLimiter(2)
    counter = Counter()
    order: list[int] = []
    gate = anyio.Event()

    @concur.limit(limiter)
    async def first(i: int) -> None:
        order.append(i)
        counter.now += 1
        counter.peak = max(counter.peak, counter.now)
        await gate.wait()
        counter.now -= 1

    @concur.limit(limiter)
    async def second(i: int) -> None:
        await first.__wrapped__(i)  # type: ignore[attr-defined]

    async with anyio.create_task_group() as group:
        for i in range(6):
            group.start_soon(first if i % 2 else second, i)
            await anyio.wait_all_tasks_blocked()
        assert limiter.borrowed_tokens == 2
        with anyio.CancelScope() as scope:
            scope.cancel()
            await first(99)
        assert limiter.borrowed_tokens == 2
        gate.set()
    assert counter.peak == 2
    assert order[:2] == [0, 1]
    assert sorted(order) == list(range(6))
    assert limiter.borrowed_tokens == 0


async def test_limit_allows_nested_calls_in_one_task() -> None:
    """A limited function may await itself: each call borrows its own token."""

    @concur.limit(2)
    async def nested(depth: int) -> int:
        if depth == 0:
            return 0
        return 1 + await nested(depth - 1)

    assert await nested(1) == 1


def test_limit_of_n_is_one_limiter_per_event_loop_run() -> None:
    """Two event loops running at once in two threads each get their own n tokens."""
    inside = [threading.Event(), threading.Event()]
    seen: list[bool] = []

    @concur.limit(1)
    async def hold(me: int) -> None:
        inside[me].set()
        seen.append(await anyio.to_thread.run_sync(inside[1 - me].wait, 10))

    threads = [
        threading.Thread(target=anyio.run, args=(hold, i), kwargs={"backend": backend})
        for i, backend in enumerate(["asyncio", "trio"])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [True, True]
    anyio.run(hold, 0)  # a later run gets a fresh limiter too
    assert seen == [True, True, True]


# --- bad input ------------------------------------------------------------------------------


async def sample() -> None:
    """An async function to decorate."""


def sync_sample() -> None:
    """A sync function to decorate."""


def generator() -> Iterator[int]:
    yield 1


@pytest.mark.parametrize(
    ("make", "error", "name"),
    [
        (lambda: concur.retry(0), ValueError, "attempts"),
        (lambda: concur.retry(2.0), TypeError, "attempts"),
        (lambda: concur.retry(True), TypeError, "attempts"),
        (lambda: concur.retry(on=()), ValueError, "on"),
        (lambda: concur.retry(on=ValueError("x")), TypeError, "on"),
        (lambda: concur.retry(on=(ValueError, int)), TypeError, "on"),
        (lambda: concur.retry(delay=-1), ValueError, "delay"),
        (lambda: concur.retry(delay=math.inf), ValueError, "delay"),
        (lambda: concur.retry(delay=math.nan), ValueError, "delay"),
        (lambda: concur.retry(delay="1"), TypeError, "delay"),
        (lambda: concur.retry(backoff=0.5), ValueError, "backoff"),
        (lambda: concur.retry(max_delay=-1), ValueError, "max_delay"),
        (lambda: concur.retry(jitter=-0.1), ValueError, "jitter"),
        (lambda: concur.retry(jitter=None), TypeError, "jitter"),
        (lambda: concur.retry(sample), TypeError, r"@concur\.retry\(\)"),
        (lambda: concur.retry()(generator), TypeError, "generator"),
        (lambda: concur.retry()(42), TypeError, "callable"),
        (lambda: concur.timeout(-1), ValueError, "seconds"),
        (lambda: concur.timeout(None), TypeError, "seconds"),
        (lambda: concur.timeout(sample), TypeError, r"@concur\.timeout\(\.\.\.\)"),
        (lambda: concur.timeout(1)(sync_sample), TypeError, "async functions; sync_sample"),
        (lambda: concur.limit(0), ValueError, "n_or_limiter"),
        (lambda: concur.limit(1.5), TypeError, "n_or_limiter"),
        (lambda: concur.limit(True), TypeError, "n_or_limiter"),
        (lambda: concur.limit(2)(sync_sample), TypeError, "async functions; sync_sample"),
    ],
)
def test_bad_arguments_name_themselves(make: Any, error: type[Exception], name: str) -> None:
    """A bad argument raises TypeError/ValueError naming it, at decoration."""
    with pytest.raises(error, match=name):
        make()


def test_a_coroutine_object_is_refused_and_closed() -> None:
    """Decorating a coroutine object raises TypeError and closes it (no warning)."""
    for decorator in (concur.retry(), concur.timeout(1), concur.limit(1)):
        coro = sample()
        with pytest.raises(TypeError, match="coroutine object"):
            decorator(coro)  # type: ignore[arg-type]
        assert coro.cr_frame is None
