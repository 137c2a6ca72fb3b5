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

import contextlib
import functools
import importlib
import math
from collections.abc import Callable
from typing import Any, final

import anyio
import anyio.lowlevel
import trio

from .log import logger
from .threadcall import INTERRUPT_EVERY, ThreadCall

__all__ = ["run_in_thread"]

_parent: Any = importlib.import_module("trio._threads").PARENT_TASK_DATA

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
    fn: Callable[[], Any],
    limiter: anyio.CapacityLimiter,
    abandon_on_cancel: bool,
    call: ThreadCall,
) -> Any:
    """Run *fn* in a trio worker thread under *limiter*; anyio's semantics, less overhead.

    With ``abandon_on_cancel=False`` the cancellation of a caller whose thread has returned
    meanwhile is raised here, as on asyncio, instead of at the caller's next checkpoint;
    and a call with interrupt hooks is watched by the run's monitor (see :class:`_Monitor`),
    which interrupts it once its caller is cancelled. Once a hook was called, the thread's
    outcome is discarded and the caller's cancellation raised.
    """
    token = _token()

    def claimed() -> Any:
        _threadlocals.current_token = token
        call.cancel_register = _parent.cancel_register  # filled by trio once cancelled
        try:
            return fn()
        finally:
            del _threadlocals.current_token

    if not abandon_on_cancel:
        if call.hooks:
            _monitor().add(call)
        call.watch = functools.partial(_watch_from_thread, token.native_token, call)
    try:
        result = await trio.to_thread.run_sync(
            claimed,
            abandon_on_cancel=abandon_on_cancel,
            limiter=limiter,  # type: ignore[arg-type]  # anyio's limiter speaks trio's protocol
            thread_name="concur worker",  # as on asyncio; trio's default: "claimed from ..."
        )
    except BaseException as exc:
        if call.interrupted:
            logger().debug("interrupted thread call %r failed", fn, exc_info=exc)
            await trio.lowlevel.checkpoint()  # the caller's own cancellation
        raise
    if not abandon_on_cancel:
        await trio.lowlevel.checkpoint_if_cancelled()
    return result


def _watch_from_thread(trio_token: Any, call: ThreadCall) -> None:
    # in the worker thread: interrupt_with added a hook; have the monitor watch this call
    with contextlib.suppress(trio.RunFinishedError):
        trio_token.run_sync_soon(_watch, call)


def _watch(call: ThreadCall) -> None:
    _monitor().add(call)


WATCH_EVERY = 0.005
"""How often the monitor looks for cancelled callers (the first interrupt's latency)."""


@final
class _Monitor:
    """The thread calls with interrupt hooks of one trio run, and the task watching them.

    trio tells a thread call's waiting task of its cancellation only through the abort
    callback of ``trio.to_thread.run_sync``, which fills the call's cancel register (the
    list ``trio.from_thread.check_cancelled`` reads too). With ``abandon_on_cancel=False``
    the task itself keeps waiting, so a system task looks at the registers of the watched
    calls every ``WATCH_EVERY`` seconds and, for each cancelled one, calls its hooks at
    once and every ``INTERRUPT_EVERY`` seconds until its thread function has returned.
    Only the event loop's thread touches ``calls`` (threads go through ``run_sync_soon``).
    """

    __slots__ = ("calls", "wake")

    def __init__(self) -> None:
        self.calls: dict[ThreadCall, float] = {}  # call -> when to interrupt next
        self.wake = trio.Event()

    def add(self, call: ThreadCall) -> None:
        if not call.finished():
            self.calls.setdefault(call, -math.inf)
            self.wake.set()

    async def run(self) -> None:
        while True:
            if not self.calls:
                self.wake = trio.Event()
                await self.wake.wait()
            await trio.sleep(WATCH_EVERY)
            now = trio.current_time()
            for call, due in list(self.calls.items()):
                if call.finished():
                    del self.calls[call]
                    continue
                register = call.cancel_register
                if register is not None and register[0] is not None and now >= due:
                    self.calls[call] = now + INTERRUPT_EVERY
                    call.interrupt()


_monitor_var: trio.lowlevel.RunVar[_Monitor] = trio.lowlevel.RunVar("concur.monitor")


def _monitor() -> _Monitor:
    try:
        return _monitor_var.get()
    except LookupError:
        monitor = _Monitor()
        _monitor_var.set(monitor)
        trio.lowlevel.spawn_system_task(monitor.run, name="concur interrupt monitor")
        return monitor
