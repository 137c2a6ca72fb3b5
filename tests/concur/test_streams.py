"""concur.streams: context-manager operators and plain async iterators, on asyncio and trio."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from wait_helpers import InFlight, Marker, assert_rate, cancel_then_fail, outcome_of, value

from concur import streams


class Source:
    """An async generator factory that records what was read and whether it was closed."""

    def __init__(self, n: int | None = 100, gate: anyio.Event | None = None) -> None:
        self.n = n
        self.gate = gate
        self.reads = 0
        self.closed = False

    async def gen(self) -> AsyncIterator[int]:
        try:
            i = 0
            while self.n is None or i < self.n:
                if self.gate is not None and i >= 2:
                    await self.gate.wait()
                await anyio.lowlevel.checkpoint()
                self.reads += 1
                yield i
                i += 1
        finally:
            self.closed = True


async def still_cancellable() -> None:
    """Cancel scopes still work in this task (trio's nursery corruption would break them)."""
    with anyio.move_on_after(0.001) as scope:
        await anyio.sleep_forever()
    assert scope.cancelled_caught


# --- merge --------------------------------------------------------------------------------------


async def test_merge_yields_every_item_of_every_source() -> None:
    """``merge`` yields all items of async and sync sources and ends when all end."""
    a, b = Source(5), Source(3)
    async with streams.merge(a.gen(), b.gen(), range(100, 104)) as items:
        got = [item async for item in items]
    assert sorted(got) == sorted([*range(5), *range(3), *range(100, 104)])
    assert a.closed
    assert b.closed


async def test_merge_of_nothing_is_empty() -> None:
    """``merge()`` with no sources is an empty stream."""
    async with streams.merge() as items:
        assert [item async for item in items] == []


async def test_merge_early_break_closes_every_source() -> None:
    """A ``break`` leaves no task running and closes every source; scopes still work."""
    a, b = Source(None), Source(None)
    async with streams.merge(a.gen(), b.gen()) as items:
        async for item in items:
            if item > 3:
                break
    assert a.closed
    assert b.closed
    await still_cancellable()


async def test_merge_outside_cancellation_closes_every_source() -> None:
    """Cancelling the consumer from outside cancels the readers and closes the sources."""
    a, b = Source(None, anyio.Event()), Source(None, anyio.Event())
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def consumer() -> None:
                async with streams.merge(a.gen(), b.gen()) as items:
                    async for _ in items:
                        pass

            tg.start_soon(consumer)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
    assert scope.cancelled_caught
    assert a.closed
    assert b.closed
    await still_cancellable()


class Closable:
    """An async iterator (not a generator) that records ``aclose()``."""

    def __init__(self) -> None:
        self.closed = 0

    def __aiter__(self) -> Closable:
        return self

    async def __anext__(self) -> int:
        await anyio.sleep_forever()
        raise AssertionError

    async def aclose(self) -> None:
        self.closed += 1


async def test_leaving_at_once_closes_sources_whose_reader_never_ran() -> None:
    """Sources are closed once even when the block is left before their reader started."""
    sources = [Closable() for _ in range(4)]
    async with streams.merge(sources[0], sources[1]):
        pass
    async with streams.buffer(sources[2], 2):
        pass
    async with streams.batch(sources[3], 2, timeout=1):
        pass
    assert [source.closed for source in sources] == [1, 1, 1, 1]


async def test_merge_source_error_is_raised_bare() -> None:
    """A failing source cancels the others and its exception leaves the block bare."""
    a = Source(None)

    async def bad() -> AsyncIterator[int]:
        yield 1
        raise ValueError("bad source")

    async def consume() -> None:
        async with streams.merge(a.gen(), bad()) as items:
            async for _ in items:
                pass

    with pytest.raises(ValueError, match="bad source"):
        await consume()
    assert a.closed


def test_merge_refuses_a_non_iterable() -> None:
    """``merge`` raises ``TypeError`` at the call for a non-iterable source."""
    with pytest.raises(TypeError, match="source 1"):
        streams.merge([1], 3)  # type: ignore[arg-type]


# --- buffer -------------------------------------------------------------------------------------


async def test_buffer_reads_at_most_size_ahead() -> None:
    """``buffer`` reads at most *size* items ahead of the consumer, plus one handed over."""
    src = Source(None)
    async with streams.buffer(src.gen(), 3) as items:
        await anyio.wait_all_tasks_blocked()
        assert src.reads == 4
        assert await items.__anext__() == 0
        await anyio.wait_all_tasks_blocked()
        assert src.reads == 5
    assert src.closed
    await still_cancellable()


async def test_buffer_passes_everything_in_order() -> None:
    """``buffer`` passes on every item in order, from a sync or an async source."""
    async with streams.buffer(range(20), 4) as items:
        assert [item async for item in items] == list(range(20))
    src = Source(10)
    async with streams.buffer(src.gen(), 1) as items:
        assert [item async for item in items] == list(range(10))


def test_buffer_bad_size() -> None:
    """``size < 1`` raises ``ValueError`` naming *size*."""
    with pytest.raises(ValueError, match="size"):
        streams.buffer([1], 0)
    with pytest.raises(TypeError, match="source"):
        streams.buffer(5, 1)  # type: ignore[arg-type]


# --- batch --------------------------------------------------------------------------------------


async def test_batch_groups_by_size_and_flushes_at_the_end() -> None:
    """``batch`` yields lists of *size* items and a last, shorter one."""
    async with streams.batch(range(7), 3) as batches:
        assert [b async for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]


async def test_batch_timeout_emits_a_partial_batch() -> None:
    """With a timeout, a batch is emitted that long after its first item."""
    gate = anyio.Event()
    src = Source(None, gate)  # yields 0 and 1, then waits for the gate
    async with streams.batch(src.gen(), 10, timeout=0.02) as batches:
        first = await batches.__anext__()
        assert first == [0, 1]
        gate.set()
        second = await batches.__anext__()
        assert second[0] == 2
    assert src.closed


async def test_batch_early_break_closes_the_source() -> None:
    """Leaving a ``batch`` block early closes the source; scopes still work."""
    src = Source(None)
    async with streams.batch(src.gen(), 2) as batches:
        async for _ in batches:
            break
    assert src.closed
    await still_cancellable()


def test_batch_bad_input() -> None:
    """``size < 1`` and a negative timeout are refused at the call."""
    with pytest.raises(ValueError, match="size"):
        streams.batch([1], 0)
    with pytest.raises(ValueError, match="timeout"):
        streams.batch([1], 2, timeout=-1)


# --- map ----------------------------------------------------------------------------------------


async def test_map_is_ordered_and_limited() -> None:
    """``streams.map`` yields in input order, never more than *limit* calls at once."""
    counter = InFlight()
    async with streams.map(range(30), counter.run, limit=3) as results:
        assert [r async for r in results] == list(range(30))
    assert counter.peak == 3


async def test_map_early_break_closes_the_source() -> None:
    """Leaving a ``streams.map`` block early closes its source."""
    src = Source(None)
    async with streams.map(src.gen(), InFlight().run, limit=2) as results:
        async for _ in results:
            break
    assert src.closed
    await still_cancellable()


def test_map_bad_input() -> None:
    """A bad limit or a non-callable is refused at the call."""
    with pytest.raises(ValueError, match="limit"):
        streams.map([1], InFlight().run, limit=0)
    with pytest.raises(TypeError, match="callable"):
        streams.map([1], 3)  # type: ignore[call-overload]


def test_streams_map_names_source_for_a_bad_source() -> None:
    """``streams.map`` refuses a non-iterable at the call, naming its argument ``source``."""
    with pytest.raises(TypeError, match="source"):
        streams.map(3, value)  # type: ignore[call-overload]


# --- plain iterators ----------------------------------------------------------------------------


async def test_take_closes_the_source_after_the_last_item() -> None:
    """``take`` yields *n* items and closes the source once the n-th was read."""
    src = Source(None)
    it = streams.take(src.gen(), 3)
    got = [await it.__anext__() for _ in range(3)]
    assert got == [0, 1, 2]
    assert src.closed
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()


async def test_take_zero_and_shorter_sources() -> None:
    """``take(src, 0)`` is empty; a source shorter than *n* ends the iterator early."""
    src = Source(5)
    assert [x async for x in streams.take(src.gen(), 0)] == []
    assert [x async for x in streams.take(range(2), 5)] == [0, 1]


async def test_aclosing_an_early_break_closes_the_source() -> None:
    """Under ``contextlib.aclosing``, a ``break`` closes the operator and its source."""
    src = Source(None)
    async with contextlib.aclosing(streams.skip(src.gen(), 2)) as it:
        async for item in it:
            assert item == 2
            break
    assert src.closed
    await still_cancellable()


async def test_plain_iterator_outside_cancellation_closes_the_source() -> None:
    """Cancelling a consumer inside ``aclosing`` closes the source."""
    src = Source(None, anyio.Event())
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def consumer() -> None:
                async with contextlib.aclosing(streams.enumerate(src.gen())) as it:
                    async for _ in it:
                        pass

            tg.start_soon(consumer)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
    assert src.closed
    await still_cancellable()


async def test_skip_drops_the_first_items() -> None:
    """``skip`` drops *n* items and closes the source at its end."""
    src = Source(6)
    assert [x async for x in streams.skip(src.gen(), 4)] == [4, 5]
    assert src.closed


async def test_filter_with_sync_and_async_predicates() -> None:
    """``filter`` keeps the items its sync or async predicate accepts."""

    async def odd(x: int) -> bool:
        await anyio.lowlevel.checkpoint()
        return x % 2 == 1

    assert [x async for x in streams.filter(range(10), lambda x: x % 3 == 0)] == [0, 3, 6, 9]
    src = Source(10)
    assert [x async for x in streams.filter(src.gen(), odd)] == [1, 3, 5, 7, 9]
    assert src.closed


async def test_enumerate_counts_from_start() -> None:
    """``enumerate`` pairs items with their index, from *start*."""
    assert [p async for p in streams.enumerate(["a", "b"], start=5)] == [(5, "a"), (6, "b")]


async def test_throttle_spreads_items() -> None:
    """``throttle`` passes items on following the token bucket."""
    stamps: list[float] = []
    async for _ in streams.throttle(range(8), 200, burst=2):
        stamps.append(anyio.current_time())
    assert len(stamps) == 8
    assert_rate(stamps, 200, 2)


async def test_aclose_is_idempotent_and_stops_iteration() -> None:
    """After ``aclose()`` an operator is exhausted and its source closed."""
    src = Source(None)
    it = streams.enumerate(src.gen())
    assert await it.__anext__() == (0, 0)
    await it.aclose()
    await it.aclose()
    assert src.closed
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()


async def test_aclose_before_iterating_closes_the_source() -> None:
    """Closing an operator that was never iterated closes its source."""
    source = Closable()
    await streams.take(source, 3).aclose()
    assert source.closed == 1


@pytest.mark.parametrize(
    ("make", "error", "word"),
    [
        (lambda: streams.take([1], -1), ValueError, "n"),
        (lambda: streams.skip([1], -1), ValueError, "n"),
        (lambda: streams.take([1], 1.0), TypeError, "n"),
        (lambda: streams.throttle([1], 0), ValueError, "per_second"),
        (lambda: streams.throttle([1], 1, burst=0), ValueError, "burst"),
        (lambda: streams.filter([1], 3), TypeError, "pred must be callable"),
        (lambda: streams.enumerate([1], start="a"), TypeError, "start"),
        (lambda: streams.take(3, 1), TypeError, "source"),
    ],
)
def test_plain_iterators_refuse_bad_input_at_the_call(make: Any, error: Any, word: str) -> None:
    """Bad arguments raise ``ValueError``/``TypeError`` at the call, naming the argument."""
    with pytest.raises(error, match=word):
        make()


@pytest.mark.trio
async def test_trio_nursery_is_not_corrupted_by_early_exit() -> None:
    """On trio, breaking out of every context-manager operator leaves cancellation sound."""
    import trio

    for make in (
        lambda: streams.merge(Source(None).gen(), range(100)),
        lambda: streams.buffer(Source(None).gen(), 2),
        lambda: streams.batch(Source(None).gen(), 2, timeout=0.01),
        lambda: streams.map(Source(None).gen(), InFlight().run, limit=2),
    ):
        with trio.CancelScope() as outer:
            async with make() as items:
                async for _ in items:
                    outer.cancel()  # cancellation from outside the operator's block
                    await trio.sleep_forever()
        assert outer.cancelled_caught
        async with make() as items:
            async for _ in items:
                break
        with trio.move_on_after(0.001) as scope:
            await trio.sleep_forever()
        assert scope.cancelled_caught


# --- the error rule at its edges (issue 9) ------------------------------------------------------


async def test_merge_lone_failure_meeting_an_outside_cancellation_is_bare() -> None:
    """A source that fails as the enclosing scope is cancelled escapes merge bare."""

    async def failing() -> AsyncIterator[int]:
        await cancel_then_fail(scope)
        yield 1  # pragma: no cover

    async def endless() -> AsyncIterator[int]:
        await anyio.sleep_forever()
        yield 1  # pragma: no cover

    async def consume() -> None:
        async with streams.merge(failing(), endless()) as items:
            async for _ in items:
                pass

    with pytest.raises(Marker):
        with anyio.CancelScope() as scope:
            await consume()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_in_a_merged_source_reaches_the_caller_bare(
    kind: type[BaseException], backend: str
) -> None:
    """A source's KeyboardInterrupt or SystemExit ends merge and is raised bare."""
    other = Source(None)

    async def interrupting() -> AsyncIterator[int]:
        yield 0
        raise kind()

    async def main() -> BaseException | None:
        try:
            async with streams.merge(interrupting(), other.gen()) as items:
                async for _ in items:
                    pass
        except kind as exc:
            return exc
        return None

    where, exc = outcome_of(main, backend)
    assert where == "caught"
    assert type(exc) is kind
    assert other.closed


# --- failing sources, sources that cannot be iterated -------------------------------------------


async def breaks_after_one() -> AsyncIterator[int]:
    """Yields 1, then fails at its next step."""
    yield 1
    await anyio.lowlevel.checkpoint()
    raise ValueError("source broke")


@pytest.mark.parametrize(
    "make",
    [
        lambda src: streams.buffer(src, 10),
        lambda src: streams.merge(src),
        lambda src: streams.batch(src, 10),
    ],
    ids=["buffer", "merge", "batch"],
)
async def test_a_failing_source_does_not_end_the_stream_normally(
    make: Callable[[AsyncIterator[int]], Any],
) -> None:
    """A source's failure cancels the body: its ``async for`` never ends as if exhausted."""
    after_loop = []

    async def consume() -> None:
        async with make(breaks_after_one()) as items:
            async for _ in items:
                pass
            after_loop.append(True)

    with pytest.raises(ValueError, match="source broke"):
        await consume()
    assert after_loop == []


class RefusesIteration:
    """An async iterable whose ``__aiter__`` raises."""

    def __aiter__(self) -> AsyncIterator[int]:
        raise TypeError("cannot iterate this")


async def test_a_source_that_cannot_be_iterated_leaves_nothing_running() -> None:
    """A source whose ``__aiter__`` raises is refused on entering, with no reader left running."""
    reads = []

    async def blocks() -> AsyncIterator[int]:
        reads.append(True)
        await anyio.sleep_forever()
        yield 0  # pragma: no cover

    with pytest.raises(TypeError, match="cannot iterate"):
        async with streams.merge(blocks(), RefusesIteration()):
            pytest.fail("the block was entered")  # pragma: no cover
    await anyio.wait_all_tasks_blocked()
    assert reads == []
    await still_cancellable()
