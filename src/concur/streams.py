"""Operators over async iterables (and plain iterables), on asyncio and trio alike.

Operators that need background tasks are async context managers, so that no task
outlives its block and nothing yields inside a task group::

    async with streams.merge(ticks, events) as items:
        async for item in items:
            ...

- :class:`merge`, :class:`buffer`, :class:`batch` and :func:`map` (async context managers)
  close their sources when their block is left, early or not.
- :func:`throttle`, :func:`take`, :func:`skip`, :func:`filter` and :func:`enumerate`
  return a :class:`ClosingAsyncIterator`, which closes its source when it is closed or
  exhausted; use ``contextlib.aclosing(...)`` to close it on an early ``break``.
"""

from ._core.exports import publish_all
from ._stream_blocks import batch as batch
from ._stream_blocks import buffer as buffer
from ._stream_blocks import map as map
from ._stream_blocks import merge as merge
from ._streams import ClosingAsyncIterator as ClosingAsyncIterator
from ._streams import enumerate as enumerate
from ._streams import filter as filter
from ._streams import skip as skip
from ._streams import take as take
from ._streams import throttle as throttle

__all__ = (
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
)

publish_all(globals(), __all__, __name__)
