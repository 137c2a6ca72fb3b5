"""Review of concur.streams: failing sources, sources that cannot be iterated, argument names."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from wait_helpers import value

from concur import streams


async def breaks_after_one() -> AsyncIterator[int]:
    """Yields 1, then fails at its next step."""
    yield 1
    await anyio.lowlevel.checkpoint()
    raise ValueError("source broke")


async def still_cancellable() -> None:
    """Cancel scopes still work in this task (trio's nursery corruption would break them)."""
    with anyio.move_on_after(0.001) as scope:
        await anyio.sleep_forever()
    assert scope.cancelled_caught


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


def test_streams_map_names_source_for_a_bad_source() -> None:
    """``streams.map`` refuses a non-iterable at the call, naming its argument ``source``."""
    with pytest.raises(TypeError, match="source"):
        streams.map(3, value)  # type: ignore[call-overload]
