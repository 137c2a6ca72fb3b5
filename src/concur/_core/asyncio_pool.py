"""The asyncio fast path for thread calls.

anyio's ``to_thread.run_sync`` on asyncio hands each call to one particular idle worker
and pays a cancel scope and two checkpoints per call; with 40 concurrent callers it costs
about twice ``asyncio.to_thread`` (benchmark B1). This module runs concur's thread calls on
its own pool instead: one shared queue per event loop, served by daemon threads named
``concur worker N``, so any idle worker takes the next call as soon as it is free.

The semantics are concur's, exactly as on the anyio path (the tests run on both):

- the limiter token is acquired on behalf of the call before it is queued and released
  once the thread function has returned, also when the caller was cancelled;
- the thread runs in a copy of the caller's context, with sniffio's "current async
  library" unset, inside an anyio worker-thread claim: ``concur.check_cancelled()``,
  ``anyio.from_thread.*`` and everything built on them work in it;
- a cancelled caller waits for the thread (``abandon_on_cancel=False``) or leaves at once
  and lets the thread release its token when it ends (``abandon_on_cancel=True``).

It uses anyio internals (its worker-thread claim, its per-task cancel scope record and
its "current async library" switch). They are read in this one module, so a change in
anyio breaks here and nowhere else; ``FAST_PATH`` is ``False`` when they are missing, and
concur then uses ``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Final, final

import anyio

# anyio internals, typed as Any: they are anyio's business, read in this module only
try:
    _aio: Any = importlib.import_module("anyio._backends._asyncio")
    _eventloop: Any = importlib.import_module("anyio._core._eventloop")
    AsyncIOBackend: Any = _aio.AsyncIOBackend
    CancelScope: Any = _aio.CancelScope
    _task_states: Any = _aio._task_states
    find_root_task: Any = _aio.find_root_task
    claim_worker_thread: Any = _eventloop.claim_worker_thread
    set_current_async_library: Any = _eventloop.set_current_async_library
    threadlocals: Any = _eventloop.threadlocals
except (ImportError, AttributeError):  # pragma: no cover - anyio reorganised its internals
    FAST_PATH = False  # pyright: ignore[reportConstantRedefinition]
else:
    FAST_PATH = True  # pyright: ignore[reportConstantRedefinition]

from .limits import give_back_on_error, take_token
from .log import logger
from .threadcall import INTERRUPT_EVERY, ThreadCall

__all__ = ["FAST_PATH", "run_in_pool"]


JOIN_SECONDS: Final = 1.0
"""How long the end of an event-loop run waits for busy (abandoned) workers to end."""

IDLE_SECONDS = 10.0
"""An idle worker ends after this long without work (anyio's figure too)."""


# The pool's accounting, correct by construction. Let W be the number of workers that are
# waiting for work (blocked in ``queue.get``, about to call it, or deciding whether to
# retire after its timeout) and Q the number of items in the queue. Under ``lock``:
#
#     idle == W - Q >= 0
#
# - submit: if ``idle > 0`` a waiting worker is free to take this item: ``idle -= 1`` and
#   the item is queued (Q + 1). Otherwise a new thread is started for it (W + 1) and the item
#   queued (Q + 1): idle is unchanged. Both happen under the lock, so two submits in one
#   loop iteration never count the same free worker twice (the first wave's bug 1).
# - a worker takes a item: W - 1 and Q - 1 at once, idle unchanged; it needs no lock.
# - a worker has finished a item: W + 1, so ``idle += 1`` (before the caller is told, so a
#   call made in reaction to the result finds this worker free).
# - a worker's wait times out: it retires only if ``idle > 0`` (then W - 1: W >= Q still);
#   with ``idle == 0`` every waiting worker, itself included, is owed to a queued item, so
#   it waits again instead (the first wave's bug 2: it retired with a item queued).
#
# Since W >= Q always holds and a waiting worker only ever leaves W by taking a item or by
# retiring while W > Q, every queued item is taken by some worker: no call is lost, and no
# call waits while a thread the limiter allows could run it. Stop markers (``None``) are
# queued only by ``shutdown``, after the loop's run has ended and no item can be submitted.


@final
class _Pool:
    """The worker threads of one event loop, fed from one shared queue."""

    __slots__ = ("__weakref__", "idle", "lock", "loop", "queue", "serial", "threads")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.idle = 0  # W - Q: waiting workers not owed to a queued item (see above)
        self.serial = 0
        self.threads: set[threading.Thread] = set()

    def submit(self, item: _Item) -> None:
        with self.lock:
            if self.idle > 0:
                self.idle -= 1
            else:
                self.serial += 1
                thread = threading.Thread(
                    target=self._serve, name=f"concur worker {self.serial}", daemon=True
                )
                thread.start()  # raises before anything is counted or queued
                self.threads.add(thread)
            self.queue.put(item)

    def shutdown(self, *_: object) -> None:
        """End every idle worker; the loop is finishing.

        Idle workers take their stop marker at once and are joined, so no idle thread
        outlives the event-loop run. A worker still running an abandoned call gets its
        marker once the call returns; the join waits for it at most ``JOIN_SECONDS``.
        """
        with self.lock:
            threads = list(self.threads)
        for _n in threads:
            self.queue.put(None)
        deadline = time.monotonic() + JOIN_SECONDS
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _wait_for_work(self) -> _Item | None:
        while True:
            try:
                return self.queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self.lock:
                    if self.idle > 0:
                        self.idle -= 1
                        return None
                # idle == 0: a item is queued (or about to be) that counts on this worker

    def _serve(self) -> None:
        loop = self.loop
        try:
            with claim_worker_thread(AsyncIOBackend, loop):
                while True:
                    item = self._wait_for_work()
                    if item is None:
                        return
                    item.run_in_worker()
                    with self.lock:
                        self.idle += 1
                    try:
                        loop.call_soon_threadsafe(item.finish)
                    except RuntimeError:  # the loop is closed: nobody is waiting
                        if not loop.is_closed():
                            raise
                    del item
        finally:
            with self.lock:
                self.threads.discard(threading.current_thread())


@final
class _Item:
    """One thread call on the pool: what to run, and how its caller learns the outcome."""

    __slots__ = (
        "abandoned",
        "context",
        "error",
        "finished",
        "fn",
        "future",
        "limiter",
        "result",
        "scope",
        "waiter",
    )

    def __init__(
        self,
        fn: Callable[[], Any],
        limiter: anyio.CapacityLimiter,
        future: asyncio.Future[Any],
        scope: object,
    ) -> None:
        self.fn = fn
        self.limiter = limiter
        self.future = future
        self.scope = scope
        self.context = contextvars.copy_context()
        self.context.run(set_current_async_library, None)
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished = False
        self.abandoned = False
        self.waiter: asyncio.Future[None] | None = None

    def run_in_worker(self) -> None:
        threadlocals.current_cancel_scope = self.scope
        try:
            self.result = self.context.run(self.fn)
        except BaseException as exc:
            self.error = exc
        finally:
            del threadlocals.current_cancel_scope

    def finish(self) -> None:
        """On the loop: the thread function has returned."""
        self.finished = True
        if self.abandoned:
            self.limiter.release_on_behalf_of(self)
            if self.error is not None:
                logger().debug("abandoned thread call %r failed", self.fn, exc_info=self.error)
            self.error = self.result = None
            return
        waiter = self.waiter
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
            return
        future = self.future
        if not future.done():
            if self.error is not None:
                future.set_exception(self.error)
            else:
                future.set_result(self.result)
        self.error = self.result = None


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = weakref.WeakKeyDictionary()


def _pool() -> _Pool:
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = _Pool(loop)
        root = find_root_task()

        def done(_: object) -> None:
            _pools.pop(loop, None)
            pool.shutdown()

        root.add_done_callback(done, context=contextvars.Context())
    return pool


async def run_in_pool(
    call: ThreadCall, limiter: anyio.CapacityLimiter, abandon_on_cancel: bool
) -> Any:
    """Run *call* on the pool under *limiter*, with concur's cancellation semantics.

    Once queued, the call runs, whatever happens to the caller; if it is given up before
    (cancelled while waiting for a token), ``call.discard()`` runs instead, on the loop.
    A caller cancelled while the thread runs interrupts it (``call.interrupt()``) at once
    and every ``INTERRUPT_EVERY`` seconds until the thread function returns: while waiting
    for it (shielded), or in the background after leaving (``abandon_on_cancel``). Once a
    hook was called, the thread's outcome is discarded (logged at DEBUG).
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    state = _task_states.get(task) if task is not None else None
    scope = state.cancel_scope if state is not None else None
    item = _Item(call.run, limiter, loop.create_future(), scope)
    await take_token(limiter, item, call.discard, AsyncIOBackend.checkpoint_if_cancelled)
    with give_back_on_error(limiter, item, call.discard):
        _pool().submit(item)
    try:
        result = await item.future
    except BaseException:
        if item.finished:
            limiter.release_on_behalf_of(item)
        elif abandon_on_cancel:
            item.abandoned = True  # finish() releases the token when the thread ends
            _interrupt_until_finished(item, call, loop)
        else:
            await _wait_shielded(item, call)
            limiter.release_on_behalf_of(item)
            error, item.error, item.result = item.error, None, None
            if error is not None:
                if not call.interrupted:  # the thread's own failure (or check_cancelled's)
                    raise error from None
                logger().debug("interrupted thread call %r failed", item.fn, exc_info=error)
        raise
    limiter.release_on_behalf_of(item)
    return result


def _interrupt_until_finished(
    item: _Item, call: ThreadCall, loop: asyncio.AbstractEventLoop
) -> None:
    def again() -> None:
        if not item.finished:
            call.interrupt()
            loop.call_later(INTERRUPT_EVERY, again)

    again()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _wait_shielded(item: _Item, call: ThreadCall) -> None:
    loop = asyncio.get_running_loop()
    with CancelScope(shield=True):
        while not item.finished:
            call.interrupt()
            waiter = item.waiter = loop.create_future()
            timer = loop.call_later(INTERRUPT_EVERY, _wake, waiter)
            try:
                await waiter
            except asyncio.CancelledError:  # a native asyncio cancel: keep waiting
                continue
            finally:
                timer.cancel()
