"""One component call: ambient settings, ``call``, ``to_thread`` and the hard thread cap."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
import threading
import types
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator
from contextvars import ContextVar, Token
from typing import Any, Final, TypeVar, TypeVarTuple, cast, final, overload

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import attrs

from . import _handoff
from ._backends import _asyncio as _asyncio_fast
from ._backends._asyncio import INTERRUPT_EVERY
from ._handoff import POLICIES, Policy

__all__ = ["Settings", "call", "check_cancelled", "interrupt_with", "scope", "to_thread"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

logger: Final = logging.getLogger("concur")

_CO_COROUTINE: Final = inspect.CO_COROUTINE


# --- validation and discovery ----------------------------------------------------------------


def fn_name(fn: object) -> str:
    """A short name for *fn*, for messages and task names (a partial is named after its
    function)."""
    while isinstance(fn, functools.partial):
        fn = fn.func  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return str(name) if name else type(fn).__qualname__


def check_callable(fn: object, where: str) -> None:
    """Raise the project's ``TypeError`` for a coroutine object or a non-callable."""
    if inspect.iscoroutine(fn):
        name = getattr(fn, "__name__", "fn")
        fn.close()  # it will never run: close it, so no "never awaited" warning
        # an async function runs on the loop: concur.call() is the fix for to_thread() too
        fix = f"tg.{where}" if where in ("spawn", "start") else "concur.call"
        raise TypeError(
            f"{where}() takes a function and its arguments, not a coroutine object: "
            f"write {fix}({name}, ...) instead of {fix}({name}(...))"
        )
    if not callable(fn):
        raise TypeError(f"{where}() takes a callable, got {type(fn).__name__} {fn!r}")


def is_async_callable(fn: object) -> bool:
    """Tell whether calling *fn* returns an awaitable, as far as can be known before.

    Recognises ``async def`` functions, bound methods and ``functools.partial`` objects
    over them, and objects whose ``__call__`` is ``async def``.
    """
    if type(fn) is types.FunctionType:
        return bool(fn.__code__.co_flags & _CO_COROUTINE) or inspect.iscoroutinefunction(fn)
    while True:
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif isinstance(fn, types.MethodType):
            fn = fn.__func__
        else:
            break
    if inspect.iscoroutinefunction(fn):
        return True
    if not isinstance(fn, (type, types.FunctionType, types.BuiltinFunctionType)):
        dunder = getattr(type(fn), "__call__", None)  # noqa: B004
        if dunder is not None and inspect.iscoroutinefunction(dunder):
            return True
    return False


def returned_coroutine(fn: object, value: object) -> TypeError:
    """Close a stray coroutine returned by a sync callable and build the error for it."""
    close = getattr(value, "close", None)
    if close is not None:
        close()
    return TypeError(
        f"{fn_name(fn)} is a sync function that returned a coroutine; declare it "
        f"async def so concur runs it on the event loop instead of in a thread"
    )


# --- ambient settings ---------------------------------------------------------------------------


@final
class _PerRunLimiter:
    """A limiter of *total* tokens per event-loop run, for scopes entered outside a loop."""

    __slots__ = ("_by_run", "total")

    def __init__(self, total: int) -> None:
        self.total = total
        self._by_run: weakref.WeakKeyDictionary[object, anyio.CapacityLimiter] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> anyio.CapacityLimiter:
        key = anyio.lowlevel.current_token().native_token
        try:
            return self._by_run[key]
        except KeyError:
            limiter = self._by_run[key] = anyio.CapacityLimiter(self.total)
            return limiter


@attrs.frozen
class Settings:
    """The ambient settings in force for component calls in the current context."""

    limiter: anyio.CapacityLimiter | _PerRunLimiter | None = None
    handoff: Policy = "warn"
    timeout: float | None = None

    def current_limiter(self) -> anyio.CapacityLimiter:
        """The limiter for thread calls here (anyio's default one if none was set)."""
        limiter = self.limiter
        if limiter is None:
            return anyio.to_thread.current_default_thread_limiter()
        if type(limiter) is _PerRunLimiter:
            return limiter.get()
        return limiter


DEFAULT_SETTINGS: Final = Settings()
_INHERIT: Final = cast(Policy, "inherit")  # marks a handoff policy that was not given
_UNSET: Final = Settings(handoff=_INHERIT)
settings_var: ContextVar[Settings] = ContextVar("concur.settings", default=DEFAULT_SETTINGS)
#: the scopes entered in this context, innermost last, with the token that undoes each
_entered: ContextVar[tuple[tuple[scope, Token[Settings]], ...]] = ContextVar(
    "concur.entered", default=()
)


def current_settings() -> Settings:
    """The ambient settings in force here: those of the innermost :class:`scope` or
    :class:`TaskGroup` entered in this context, or the defaults.

    ``limiter`` is the limiter an enclosing scope or group set (``None`` when none did);
    :meth:`Settings.current_limiter` resolves it for the running event loop. Usable in
    sync and async code, with or without a running loop.
    """
    return settings_var.get()


def check_thread_limit(thread_limit: object, where: str = "thread_limit") -> None:
    if isinstance(thread_limit, bool) or not isinstance(thread_limit, int):
        raise TypeError(f"{where} must be an int, got {type(thread_limit).__name__}")
    if thread_limit < 1:
        raise ValueError(f"{where} must be at least 1, got {thread_limit}")


def check_timeout(timeout: object, where: str = "timeout") -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{where} must be a number of seconds or None, got {timeout!r}")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"{where} must be >= 0 seconds, got {timeout!r}")


def derive_settings(
    parent: Settings,
    *,
    thread_limit: int | None,
    limiter: anyio.CapacityLimiter | None,
    handoff: Policy | None,
    timeout: float | None,
    in_loop: bool,
) -> Settings:
    """Validate options and build the settings that inherit what is not given."""
    if thread_limit is not None and limiter is not None:
        raise ValueError("give either thread_limit= or limiter=, not both")
    if handoff is not None:
        if not isinstance(handoff, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f'handoff must be "warn", "strict" or "off", got {handoff!r}')
        if handoff not in POLICIES:
            raise ValueError(f'handoff must be "warn", "strict" or "off", got {handoff!r}')
    if limiter is not None and not isinstance(
        limiter,
        anyio.CapacityLimiter,  # pyright: ignore[reportUnnecessaryIsInstance]
    ):
        raise TypeError(f"limiter must be an anyio.CapacityLimiter, got {type(limiter).__name__}")
    check_timeout(timeout)
    new_limiter: anyio.CapacityLimiter | _PerRunLimiter | None = parent.limiter
    if thread_limit is not None:
        check_thread_limit(thread_limit)
        new_limiter = (
            anyio.CapacityLimiter(thread_limit) if in_loop else _PerRunLimiter(thread_limit)
        )
    elif limiter is not None:
        new_limiter = limiter
    return Settings(
        limiter=new_limiter,
        handoff=parent.handoff if handoff is None else handoff,
        timeout=parent.timeout if timeout is None else timeout,
    )


@final
class scope:
    """Set the ambient settings for component calls, without starting a task group.

    Usable as ``with concur.scope(...):`` in sync and async code alike (and as
    ``async with``). Settings not given are inherited from the enclosing scope or
    :class:`TaskGroup`.

    Args:
        thread_limit: cap thread calls made inside at this many at once. Entered outside an
            event loop, each event-loop run inside gets its own limiter of that many tokens.
        limiter: share this :class:`anyio.CapacityLimiter` instead (not with *thread_limit*).
        handoff: the handoff policy, ``"warn"``, ``"strict"`` or ``"off"``.
        timeout: a per-call default: each :func:`call` and :meth:`TaskGroup.spawn` inside
            is bounded by it (``TimeoutError``). It is not a deadline for the scope's body.

    Raises:
        ValueError: both *thread_limit* and *limiter*, ``thread_limit < 1``, an unknown
            policy or a negative timeout.
    """

    __slots__ = ("_own",)

    def __init__(
        self,
        *,
        thread_limit: int | None = None,
        limiter: anyio.CapacityLimiter | None = None,
        handoff: Policy | None = None,
        timeout: float | None = None,
    ) -> None:
        # Only what is given is the scope's own; the rest is inherited where it is entered.
        self._own = derive_settings(
            _UNSET,
            thread_limit=thread_limit,
            limiter=limiter,
            handoff=handoff,
            timeout=timeout,
            in_loop=_in_event_loop(),
        )

    @property
    def settings(self) -> Settings:
        """The settings this scope puts in force, entered here and now."""
        parent = settings_var.get()
        own = self._own
        return Settings(
            limiter=parent.limiter if own.limiter is None else own.limiter,
            handoff=parent.handoff if own.handoff is _INHERIT else own.handoff,
            timeout=parent.timeout if own.timeout is None else own.timeout,
        )

    def __enter__(self) -> scope:
        token = settings_var.set(self.settings)
        _entered.set((*_entered.get(), (self, token)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        # The tokens live in the context, not on the object: one scope object may be
        # entered by many tasks (and threads) at once, each exit undoing its own entry.
        entered = _entered.get()
        if not entered or entered[-1][0] is not self:
            raise RuntimeError(
                "concur.scope exited where it was not the last scope entered: leave scopes "
                "in the reverse order of entering them, in the task that entered them"
            )
        settings_var.reset(entered[-1][1])
        _entered.set(entered[:-1])

    async def __aenter__(self) -> scope:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__()


def _in_event_loop() -> bool:
    try:
        anyio.lowlevel.current_token()
    except RuntimeError:
        return False
    return True


# --- the thread call ------------------------------------------------------------------------

_PENDING: Final = 0
_RUNNING: Final = 1
_DONE: Final = 2
_ABANDONED: Final = 3

#: the thread call running in this worker thread, for :func:`interrupt_with`
_local = threading.local()


@final
class ThreadCall:
    """The state shared by one thread call's caller and its worker thread.

    Interrupt hooks: ``hooks`` holds zero-argument callables, those of the handed-off
    arguments (from the handoff rules) and those :func:`interrupt_with` adds from the
    thread while its block runs. The thread only appends and removes (atomic list
    operations); the loop only iterates over a copy, so each sees a consistent list. Once
    the loop has called a hook, ``interrupted`` is set and the thread's outcome is
    discarded: the caller raises its own cancellation.
    """

    __slots__ = (
        "args",
        "cancel_register",
        "cleanups",
        "ended",
        "error",
        "fn",
        "hooks",
        "interrupted",
        "limiter",
        "lock",
        "state",
        "token",
        "waiting",
        "watch",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        cleanups: list[_handoff.Cleanup],
        hooks: list[_handoff.Hook],
    ) -> None:
        self.fn = fn
        self.args = args
        self.cleanups = cleanups
        self.hooks = hooks
        self.interrupted = False
        self.state: int = _PENDING
        self.lock: threading.Lock | None = None
        self.limiter: anyio.CapacityLimiter | None = None
        self.token: anyio.lowlevel.EventLoopToken | None = None
        #: set on the loop once an abandoned thread has ended (made only when abandoning)
        self.ended: anyio.Event | None = None
        #: what an abandoned thread function raised
        self.error: BaseException | None = None
        #: the caller waits for the abandoned thread (abandon_on_cancel=False)
        self.waiting = False
        #: trio: the call's cancel register (set by the thread); asks to be watched
        self.cancel_register: list[Any] | None = None
        self.watch: Callable[[], None] | None = None

    def finished(self) -> bool:
        """Whether the thread function has returned (or will never run)."""
        return self.state == _DONE

    def _call(self) -> Any:
        outer = getattr(_local, "call", None)
        _local.call = self
        try:
            result = self.fn(*self.args)
        finally:
            _local.call = outer
        if inspect.iscoroutine(result):
            raise returned_coroutine(self.fn, result)
        if self.cleanups:
            _handoff.check_result(result)
        return result

    def run(self) -> Any:
        """The function the worker thread runs (non-abandoning mode)."""
        self.state = _RUNNING
        try:
            return self._call()
        finally:
            self.state = _DONE
            if self.cleanups:
                _handoff.run_cleanups(self.cleanups)

    def run_abandonable(self) -> Any:
        """The function the worker thread runs when the caller may abandon it."""
        lock = self.lock
        assert lock is not None
        with lock:
            if self.state == _ABANDONED:
                return None  # the caller left before we started; it cleaned up
            self.state = _RUNNING
        try:
            return self._call()
        except BaseException as exc:
            if self.abandoned():
                self.error = exc
            raise
        finally:
            try:
                if self.cleanups:
                    _handoff.run_cleanups(self.cleanups)
            finally:
                with lock:
                    abandoned = self.abandoned()
                    self.state = _DONE
                if abandoned:
                    self._tell_the_loop()

    def discard(self) -> None:
        """On the loop: the thread function will never run; run the cleanups here."""
        if self.cleanups:
            _handoff.run_cleanups(self.cleanups)

    def abandon(self) -> int:
        """On the loop: the caller leaves; returns the state the thread call was in.

        A call that had not started will not run (its cleanups run now); a running one is
        left to finish on its own, and tells the loop when it has (:attr:`ended`).
        """
        assert self.lock is not None
        if self.ended is None:
            self.ended = anyio.Event()
        with self.lock:
            state = self.state
            if state != _DONE:
                self.state = _ABANDONED
        if state == _PENDING:
            self.discard()
        return state

    def abandoned(self) -> bool:
        """Whether the caller has left without the result (set from the event loop)."""
        return self.state == _ABANDONED

    def interrupt(self) -> None:
        """On the loop: call every interrupt hook; a hook's failure is logged, not raised."""
        hooks = list(self.hooks)
        if hooks:
            self.interrupted = True
        for hook in hooks:
            try:
                hook()
            except Exception:
                logger.warning(
                    "the interrupt hook %r of a cancelled thread call failed", hook, exc_info=True
                )

    async def wait_interrupting(self) -> None:
        """On the loop, shielded: interrupt now and every ``INTERRUPT_EVERY`` seconds
        until the abandoned thread function has returned."""
        ended = self.ended
        assert ended is not None
        with anyio.CancelScope(shield=True):
            while not ended.is_set():
                self.interrupt()
                with anyio.move_on_after(INTERRUPT_EVERY):
                    await ended.wait()

    def outcome_discarded(self) -> BaseException | None:
        """After the thread has returned: its exception if it still counts, else None.

        Once a hook has been called, the thread's result or failure (an
        ``InterruptException``, say) is discarded: it is logged at DEBUG.
        """
        error, self.error = self.error, None
        if self.interrupted:
            if error is not None:
                logger.debug("interrupted thread call %r failed", self.fn, exc_info=error)
            return None
        return error

    def _tell_the_loop(self) -> None:
        # in the thread, once an abandoned call has returned: release concur's own token
        # (the generic path), set ``ended`` for a caller waiting for the thread
        token = self.token
        if token is None:
            return
        try:
            anyio.from_thread.run_sync(self._ended_on_loop, token=token)
        except Exception:  # the loop is gone: its limiter and waiters went with it
            logger.debug("could not tell the loop that %r ended", self.fn, exc_info=True)

    def _ended_on_loop(self) -> None:
        if self.limiter is not None:
            self.limiter.release_on_behalf_of(self)
        if self.ended is not None:
            self.ended.set()
        if not self.waiting and self.error is not None:  # nobody will read it
            logger.debug("abandoned thread call %r failed", self.fn, exc_info=self.error)
            self.error = None


@contextlib.contextmanager
def interrupt_with(hook: Callable[[], object]) -> Generator[None]:
    """Register *hook* to interrupt the current thread call while the block runs.

    For resources that a thread function opens itself, which no handoff rule can see: if
    the call that started this thread is cancelled (fail-fast, a timeout, an outside
    cancellation, Ctrl-C) while the block runs, concur calls ``hook()`` from the event
    loop's thread, at once and then every 100 ms until the thread function returns, just
    like a handoff rule's interrupt hook (see :func:`concur.handoff.register`); the
    caller then gets its own cancellation, and what the thread returns or raises is
    discarded. The hook must be idempotent and must not block; an exception it raises is
    logged at WARNING on the ``concur`` logger::

        def query(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
            cur = con.cursor()
            with cur, concur.interrupt_with(cur.interrupt):
                return cur.execute(HEAVY_SQL).pl()

    Outside a thread that concur started for a call (plain sync code, a thread of your
    own) it does nothing, since nothing there could cancel the code: a library can use it
    unconditionally.

    Args:
        hook: a function of no arguments.

    Raises:
        TypeError: *hook* is not callable.
    """
    if not callable(hook):
        raise TypeError(f"interrupt_with() takes a function, got {type(hook).__name__} {hook!r}")
    call: ThreadCall | None = getattr(_local, "call", None)
    if call is None:
        yield
        return
    call.hooks.append(hook)
    if call.watch is not None:
        call.watch()  # trio: have the loop watch this call's caller for cancellation
    try:
        yield
    finally:
        call.hooks.remove(hook)


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
    check_callable(fn, "to_thread")
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
    return await _run_in_thread(fn, args, limiter, settings.handoff, abandon_on_cancel)


def prepare_thread_call(
    fn: Callable[..., Any], args: tuple[Any, ...], policy: Policy
) -> ThreadCall:
    """Hand off *fn*'s arguments now (warnings point at the caller's line) for a later run.

    Until :func:`run_thread_call` runs it, its handoff cleanups are owed: call
    :meth:`ThreadCall.discard` if it will never run.
    """
    fn, args, cleanups, hooks = _handoff.hand_args(fn, args, policy)
    return ThreadCall(fn, args, cleanups, hooks)


async def _run_in_thread(
    fn: Callable[..., T],
    args: tuple[Any, ...],
    limiter: anyio.CapacityLimiter,
    policy: Policy,
    abandon_on_cancel: bool,
) -> T:
    job = prepare_thread_call(fn, args, policy)
    return cast(T, await run_thread_call(job, limiter, abandon_on_cancel))


async def run_thread_call(
    job: ThreadCall, limiter: anyio.CapacityLimiter, abandon_on_cancel: bool
) -> Any:
    """Run a prepared thread call under *limiter*, with concur's cancellation semantics.

    Every path observes a cancellation while the thread runs, so that it can call the
    call's interrupt hooks (see :meth:`ThreadCall.interrupt`).
    """
    backend = _asyncio_fast.current_async_library()
    if backend == "asyncio" and _asyncio_fast.FAST_PATH:
        return await _asyncio_fast.run_in_pool(job, limiter, abandon_on_cancel)
    if backend == "trio" and (_trio := _trio_fast or _load_trio_fast()) is not None:
        if not abandon_on_cancel:  # trio's own wait, watched for interrupts
            try:
                return await _trio.run_in_thread(job.run, limiter, False, job)
            finally:
                if job.state == _PENDING:
                    job.discard()
        # trio keeps the token of an abandoned thread until the thread ends: the cap holds
        return await _observed(
            job, True, None, lambda: _trio.run_in_thread(job.run_abandonable, limiter, True, job)
        )
    # anyio's path: concur holds its own token, and anyio gets an unlimited limiter, since
    # anyio on asyncio would give the token back as soon as the caller is cancelled
    return await _observed(
        job,
        abandon_on_cancel,
        limiter,
        lambda: anyio.to_thread.run_sync(
            job.run_abandonable, abandon_on_cancel=True, limiter=_unlimited()
        ),
    )


async def _observed(
    job: ThreadCall,
    abandon_on_cancel: bool,
    own_limiter: anyio.CapacityLimiter | None,
    start: Callable[[], Awaitable[Any]],
) -> Any:
    """Run *job* through *start*, which abandons the thread when the caller is cancelled.

    Then, with the thread still running: ``abandon_on_cancel=True`` interrupts it (now, and
    every ``INTERRUPT_EVERY`` seconds in the background) and leaves; ``False`` interrupts
    it the same way while waiting, shielded, until the thread function has returned.
    """
    job.lock = threading.Lock()
    job.token = anyio.lowlevel.current_token()
    if own_limiter is not None:
        try:
            await own_limiter.acquire_on_behalf_of(job)
        except BaseException:  # cancelled while waiting for a token: fn never runs
            job.discard()
            raise
        job.limiter = own_limiter
    try:
        result = await start()
    except BaseException:
        job.waiting = not abandon_on_cancel
        state = job.abandon()
        if state != _RUNNING:
            if own_limiter is not None:
                own_limiter.release_on_behalf_of(job)
            raise
        # the thread runs on, and releases concur's own token (if any) when it ends
        if abandon_on_cancel:
            interrupt_in_background(job)
            raise
        await job.wait_interrupting()
        error = job.outcome_discarded()
        if error is not None:  # the thread's own failure (or check_cancelled's) wins
            raise error from None
        raise
    if own_limiter is not None:
        own_limiter.release_on_behalf_of(job)
    if not abandon_on_cancel:
        # a caller cancelled as its thread returned gets the cancellation now
        await anyio.lowlevel.checkpoint_if_cancelled()
    return result


def interrupt_in_background(job: ThreadCall) -> None:
    """Interrupt an abandoned call now and every ``INTERRUPT_EVERY`` seconds until its
    thread has returned, from the event loop, without anyone waiting."""
    job.interrupt()
    ended = job.ended
    if ended is None:  # pragma: no cover - abandon() made it
        return
    backend = _asyncio_fast.current_async_library()
    if backend == "asyncio":
        import asyncio

        loop = asyncio.get_running_loop()

        def again() -> None:
            if not ended.is_set():
                job.interrupt()
                loop.call_later(INTERRUPT_EVERY, again)

        loop.call_later(INTERRUPT_EVERY, again)
    elif backend == "trio":
        import trio

        async def rounds() -> None:
            while not ended.is_set():
                with trio.move_on_after(INTERRUPT_EVERY):
                    await ended.wait()
                if not ended.is_set():
                    job.interrupt()

        trio.lowlevel.spawn_system_task(rounds, name=f"concur interrupts {fn_name(job.fn)}")


_trio_fast: types.ModuleType | None = None
_trio_fast_missing = False


def _load_trio_fast() -> types.ModuleType | None:
    # imported on first use: importing it imports trio, which `import concur` must not;
    # if anyio's internals it reads have moved, thread calls take anyio's own path
    global _trio_fast, _trio_fast_missing
    if _trio_fast_missing:
        return None
    try:
        from ._backends import _trio
    except (ImportError, AttributeError):  # pragma: no cover - anyio reorganised
        _trio_fast_missing = True
        logger.debug("trio fast path unavailable; using anyio.to_thread", exc_info=True)
        return None
    _trio_fast = _trio
    return _trio


_unlimited_var: anyio.lowlevel.RunVar[anyio.CapacityLimiter] = anyio.lowlevel.RunVar(
    "concur.unlimited"
)


def _unlimited() -> anyio.CapacityLimiter:
    # The token that counts is concur's own; anyio's limiter must not cap a second time.
    try:
        return _unlimited_var.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(math.inf)
        _unlimited_var.set(limiter)
        return limiter


def check_cancelled() -> None:
    """Raise the backend's cancellation exception if this thread's caller was cancelled.

    Call it from inside a worker thread started by :func:`to_thread` (or by
    ``anyio.to_thread.run_sync``) so that long sync work stops early when the task waiting
    for it is cancelled. It cannot see a cancellation that a shielded scope around the
    caller hides.

    Raises:
        RuntimeError: called from a thread that :func:`to_thread` did not start.
    """
    anyio.from_thread.check_cancelled()


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
    if timeout is None:
        settings = settings_var.get()
        timeout = settings.timeout
    else:
        check_timeout(timeout)
    if is_async_callable(fn):
        if timeout is None:
            return await cast("Callable[..., Awaitable[T]]", fn)(*args)
        with anyio.fail_after(timeout):
            return await cast("Callable[..., Awaitable[T]]", fn)(*args)
    check_callable(fn, "call")
    settings = settings_var.get()
    sync_fn = cast("Callable[..., T]", fn)
    if timeout is None:
        return await _run_in_thread(
            sync_fn, args, settings.current_limiter(), settings.handoff, False
        )
    with anyio.fail_after(timeout):
        return await _run_in_thread(
            sync_fn, args, settings.current_limiter(), settings.handoff, False
        )
