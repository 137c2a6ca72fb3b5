"""The trio fast path for thread calls.

anyio's ``to_thread.run_sync`` on trio is a thin layer over ``trio.to_thread.run_sync``,
but each call still pays a backend lookup, a generator-based context manager to claim the
worker thread for anyio, and a second backend lookup for the checkpoint after it. With 40
concurrent callers the loop thread is the bottleneck and those microseconds show
(benchmark B1). This module calls trio directly and claims the thread for anyio with a
cached token, so ``anyio.from_thread.*``, ``concur.check_cancelled()`` and everything
built on them work in the thread exactly as under anyio.

trio itself keeps the limiter token of an abandoned thread until the thread ends, so the
hard cap needs nothing more here. The anyio internals used (the worker-thread record and
the trio backend class) are read in this one module; it is imported only once a thread
call runs under trio.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import trio

__all__ = ["run_in_thread"]

_eventloop: Any = importlib.import_module("anyio._core._eventloop")
_threadlocals: Any = _eventloop.threadlocals
_TrioBackend: Any = importlib.import_module("anyio._backends._trio").TrioBackend

_last: tuple[object, anyio.lowlevel.EventLoopToken] | None = None


def _token() -> anyio.lowlevel.EventLoopToken:
    global _last
    trio_token = trio.lowlevel.current_trio_token()
    last = _last
    if last is not None and last[0] is trio_token:
        return last[1]
    token = anyio.lowlevel.EventLoopToken(_TrioBackend, trio_token)
    _last = (trio_token, token)
    return token


async def run_in_thread(
    fn: Callable[[], Any], limiter: anyio.CapacityLimiter, abandon_on_cancel: bool
) -> Any:
    """Run *fn* in a trio worker thread under *limiter*; anyio's semantics, less overhead.

    With ``abandon_on_cancel=False`` the cancellation of a caller whose thread has returned
    meanwhile is raised here, as on asyncio, instead of at the caller's next checkpoint.
    """
    token = _token()

    def claimed() -> Any:
        _threadlocals.current_token = token
        try:
            return fn()
        finally:
            del _threadlocals.current_token

    result = await trio.to_thread.run_sync(
        claimed,
        abandon_on_cancel=abandon_on_cancel,
        thread_name="concur worker",  # as on asyncio; trio's default names it "claimed ..."
        limiter=limiter,  # type: ignore[arg-type]  # anyio's limiter speaks trio's protocol
    )
    if not abandon_on_cancel:
        await trio.lowlevel.checkpoint_if_cancelled()
    return result
