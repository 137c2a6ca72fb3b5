"""One component call: :func:`call`, :func:`to_thread`, and the choice of the thread path
(each backend's fast path, else anyio's) for a thread call."""

from __future__ import annotations

import importlib
import types
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, cast, final, overload

import anyio

if TYPE_CHECKING:  # at run time anyio imports these on first use
    import anyio.to_thread

from . import handoff as _handoff
from .checks import check_function, check_timeout, fn_name, is_async_callable
from .handoff import Policy
from .limits import unlimited
from .log import logger
from .settings import bounded, settings_var
from .threadcall import PENDING, ThreadCall, current_async_library, observed

__all__ = [
    "SyncFunctionExpected",
    "call",
    "prepare_thread_call",
    "run_in_thread",
    "run_thread_call",
    "to_thread",
]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


@final
class SyncFunctionExpected:
    """What a type checker sees :func:`to_thread` or :func:`asyncify` return for an async
    function: it cannot be awaited or called, so the mistake is an error there.

    At run time they raise ``TypeError`` instead; nothing ever makes one of these.
    """

    __slots__ = ()

    def __init__(self) -> None:  # pragma: no cover - typing only
        raise TypeError("SyncFunctionExpected exists for type checkers only")


@overload
def to_thread(  # type: ignore[overload-overlap]  # an async fn matches both: the first wins
    fn: Callable[[*Ts], Coroutine[Any, Any, Any]],
    /,
    *args: *Ts,
    limiter: anyio.CapacityLimiter | None = None,
    abandon_on_cancel: bool = False,
) -> SyncFunctionExpected: ...


@overload
async def to_thread(
    fn: Callable[[*Ts], T],
    /,
    *args: *Ts,
    limiter: anyio.CapacityLimiter | None = None,
    abandon_on_cancel: bool = False,
) -> T: ...


async def to_thread(  # type: ignore[misc]  # the first overload is for type checkers only
    fn: Callable[[*Ts], T],
    /,
    *args: *Ts,
    limiter: anyio.CapacityLimiter | None = None,
    abandon_on_cancel: bool = False,
) -> T:
    """Run the sync function *fn* in a worker thread and return its result.

    The one way concur runs sync code in a thread. The arguments (and those stored in a
    ``functools.partial`` *fn*) first pass through the ambient handoff policy (see
    :mod:`concur.handoff`): a polars frame reaches the thread as a clone, a DuckDB
    connection as a fresh cursor that is closed once *fn* has returned, whatever the
    outcome. A bound method's ``__self__`` is passed as it is.

    **Hard cap.** A token of *limiter* (default: the ambient limiter of the enclosing
    :func:`scope` or :class:`TaskGroup`, else anyio's default thread limiter) is held from
    before the thread starts until *fn* has returned, on asyncio and trio alike, including
    when the caller was cancelled and abandoned the thread. So the number of threads
    running calls under one limiter never exceeds its total tokens.

    **Cancellation.** With ``abandon_on_cancel=False`` (the default), cancelling the
    caller does not kill the thread; the caller waits until *fn* returns, then raises the
    cancellation (or the exception *fn* raised, such as the one :func:`check_cancelled`
    raised in it). Code in the thread can cooperate by calling :func:`check_cancelled`,
    which raises once the caller is cancelled. With ``abandon_on_cancel=True``, the caller
    raises at once; the thread runs on, still holding its token; its result or exception
    is discarded (an exception is logged at DEBUG on the ``concur`` logger). If the caller
    is cancelled while it waits for a limiter token, *fn* never runs and the handoff
    cleanups run on the event loop.

    **Interrupts.** If the caller is cancelled (fail-fast, a timeout, an outside
    cancellation, Ctrl-C through :func:`concur.run` or a :class:`Runner`) while *fn* runs,
    concur calls the interrupt hook of every argument it handed off (a DuckDB connection's
    cursor is interrupted; see :func:`concur.handoff.register`) and every hook *fn*
    registered with :func:`interrupt_with`, from the event loop's thread, at once and then
    every 100 ms until *fn* returns, with either value of *abandon_on_cancel*. Once a hook
    has been called, whatever *fn* then returns or raises (``duckdb.InterruptException``,
    say) is discarded, logged at DEBUG, and the caller gets its own cancellation (or its
    ``TimeoutError``, or its group's error). A DuckDB query is interrupted within a few
    milliseconds; a running polars computation cannot be interrupted reliably: call
    :func:`check_cancelled` between steps there. No hook runs under ``handoff="off"``,
    for a bound method's ``__self__`` or for values a closure captured.

    Never call it inside a shielded cancel scope if the thread should see cancellation:
    :func:`check_cancelled` cannot see through the shield.

    Raises:
        TypeError: *fn* is not callable, is a coroutine object or an async function, or
            returned a coroutine; it returned a DuckDB relation of a handed-off cursor;
            *limiter* is not a :class:`anyio.CapacityLimiter`, or *abandon_on_cancel* not
            a bool.
        UnsafeHandoffError: an argument is refused by the ``"strict"`` policy.
    """
    check_function(fn, "to_thread", fix="concur.call")
    if is_async_callable(fn):
        name = getattr(fn, "__name__", None) or fn_name(fn)
        raise TypeError(
            f"to_thread() runs sync functions in a worker thread; {name} is an async "
            f"function: await {name}(...) on the loop, or write concur.call({name}, ...)"
        )
    if type(abandon_on_cancel) is not bool:
        raise TypeError(f"abandon_on_cancel must be True or False, got {abandon_on_cancel!r}")
    settings = settings_var.get()
    if limiter is None:
        limiter = settings.current_limiter()
    elif not isinstance(limiter, anyio.CapacityLimiter):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(
            f"limiter must be an anyio.CapacityLimiter (concur.CapacityLimiter), got "
            f"{type(limiter).__name__} {limiter!r}; for a cap of N threads pass "
            f"concur.CapacityLimiter(N)"
        )
    return await run_in_thread(fn, args, limiter, settings.handoff, abandon_on_cancel)


def prepare_thread_call(
    fn: Callable[..., Any], args: tuple[Any, ...], policy: Policy
) -> ThreadCall:
    """Hand off *fn*'s arguments now (warnings point at the caller's line) for a later run.

    Until :func:`run_thread_call` runs it, its handoff cleanups are owed: call
    :meth:`ThreadCall.discard` if it will never run.
    """
    fn, args, cleanups, hooks = _handoff.hand_args(fn, args, policy)
    return ThreadCall(fn, args, cleanups, hooks)


async def run_in_thread(
    fn: Callable[..., T],
    args: tuple[Any, ...],
    limiter: anyio.CapacityLimiter,
    policy: Policy,
    abandon_on_cancel: bool,
) -> T:
    thread_call = prepare_thread_call(fn, args, policy)
    return cast(T, await run_thread_call(thread_call, limiter, abandon_on_cancel))


async def run_thread_call(
    thread_call: ThreadCall, limiter: anyio.CapacityLimiter, abandon_on_cancel: bool
) -> Any:
    """Run a prepared thread call under *limiter*, with concur's cancellation semantics.

    Every path observes a cancellation while the thread runs, so that it can call the
    call's interrupt hooks (see :meth:`ThreadCall.interrupt`).
    """
    backend = current_async_library() or ""
    try:
        fast = _fast_paths[backend]
    except KeyError:
        fast = _fast_path(backend)
    if fast is not None and backend == "asyncio":
        return await fast.run_in_pool(thread_call, limiter, abandon_on_cancel)
    if fast is not None and backend == "trio":
        _trio = fast
        if not abandon_on_cancel:  # trio's own wait, watched for interrupts
            try:
                return await _trio.run_in_thread(thread_call.run, limiter, False, thread_call)
            finally:
                if thread_call.state == PENDING:
                    thread_call.discard()
        # trio keeps the token of an abandoned thread until the thread ends: the cap holds
        return await observed(
            thread_call,
            True,
            None,
            lambda: _trio.run_in_thread(thread_call.run_abandonable, limiter, True, thread_call),
        )
    # anyio's path: concur holds its own token, and anyio gets an unlimited limiter, since
    # anyio on asyncio would give the token back as soon as the caller is cancelled
    return await observed(
        thread_call,
        abandon_on_cancel,
        limiter,
        lambda: anyio.to_thread.run_sync(
            thread_call.run_abandonable, abandon_on_cancel=True, limiter=unlimited()
        ),
    )


# Each backend's fast path is imported when a loop of that kind first makes a thread call
# (an asyncio app has asyncio loaded already; `import concur` imports neither). None: it
# is unavailable (anyio's internals it reads have moved), and anyio's own path is used.
_fast_paths: dict[str, types.ModuleType | None] = {}


def _fast_path(backend: str) -> types.ModuleType | None:
    try:
        return _fast_paths[backend]
    except KeyError:
        pass
    module: types.ModuleType | None = None
    name = {"asyncio": ".asyncio_pool", "trio": ".trio_threads"}.get(backend)
    if name is not None:
        try:
            module = importlib.import_module(name, __package__)
        except (ImportError, AttributeError):  # pragma: no cover - anyio reorganised
            logger().debug(
                "%s fast path unavailable; using anyio.to_thread", backend, exc_info=True
            )
        else:
            if not getattr(module, "FAST_PATH", True):  # pragma: no cover
                module = None
    _fast_paths[backend] = module
    return module


# --- the component call ------------------------------------------------------------------


@overload
async def call(
    fn: Callable[[*Ts], Awaitable[T]], /, *args: *Ts, timeout: float | None = None
) -> T: ...


@overload
async def call(fn: Callable[[*Ts], T], /, *args: *Ts, timeout: float | None = None) -> T: ...


async def call(
    fn: Callable[[*Ts], Awaitable[T]] | Callable[[*Ts], T],
    /,
    *args: *Ts,
    timeout: float | None = None,
) -> T:
    """Make one component call, whether *fn* is async or sync.

    Async callables (``async def`` functions, bound methods, partials, objects with an
    async ``__call__``) are awaited on the event loop; anything else runs in a worker
    thread through :func:`to_thread`, with the ambient limiter and handoff policy. Which
    one *fn* is, is discovered at run time.

    Args:
        fn: the callable.
        args: its positional arguments (use ``functools.partial`` for keywords).
        timeout: seconds before ``TimeoutError``; defaults to the ambient :func:`scope`'s.

    Cancellation: an async call is cancelled at its next checkpoint; a sync call behaves as
    :func:`to_thread` with ``abandon_on_cancel=False``: the caller waits for the thread,
    which can stop early through :func:`check_cancelled`. A timeout is a cancellation too:
    it is raised as ``TimeoutError`` once the call has stopped.

    Returns:
        What *fn* returned; its own exception propagates unwrapped.

    Raises:
        TypeError: *fn* is not callable, is a coroutine object, or is sync and returned a
            coroutine.
    """
    settings = settings_var.get()
    if timeout is None:
        timeout = settings.timeout
    else:
        check_timeout(timeout)
    # The unbounded case awaits directly (benchmark B2: one coroutine frame less per call);
    # a bound is applied by bounded(), as everywhere else.
    if is_async_callable(fn):
        async_fn = cast("Callable[..., Awaitable[T]]", fn)
        if timeout is None:
            return await async_fn(*args)
        return await bounded(timeout, async_fn, *args)
    check_function(fn, "call", fix="concur.call")
    sync_fn = cast("Callable[..., T]", fn)
    limiter = settings.current_limiter()
    if timeout is None:
        return await run_in_thread(sync_fn, args, limiter, settings.handoff, False)
    return await bounded(timeout, run_in_thread, sync_fn, args, limiter, settings.handoff, False)
