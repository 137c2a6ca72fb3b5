"""Setup, teardown and signals: :func:`run_until_signal` and :func:`lifespan`.

- :func:`run_until_signal`: run an async function until it returns or a signal arrives;
  the first signal cancels it and gives its cleanup ``grace`` seconds; a second signal
  stops waiting.
- :func:`lifespan`: an async context manager that runs ``setup()`` before its body and
  ``teardown()`` after it, the teardown shielded and bounded.

The two cooperate through a private channel, the context variable ``_shutdown_var`` (see
``_Shutdown``): a lifespan teardown is shielded from the cancellation that stopped *fn*, yet
the ``run_until_signal`` it runs under can still cut it short.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Final, TypeVar, TypeVarTuple, cast, final, overload

import anyio
import anyio.lowlevel

import concur
from concur._core.checks import (
    check_async_function,
    check_function,
    check_number,
    fn_name,
    is_async_callable,
)

__all__ = ("lifespan", "run_until_signal")

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

logger: Final = logging.getLogger("concur")

#: signals no process can catch
_UNCATCHABLE: Final = frozenset(
    getattr(signal, name) for name in ("SIGKILL", "SIGSTOP") if hasattr(signal, name)
)


# --- the private channel between run_until_signal and lifespan ------------------------------


@final
class _Shutdown:
    """What one running :func:`run_until_signal` shares with the lifespans under it.

    Invariant (every method runs on the thread of the event loop running
    ``run_until_signal``, ``thread``; nothing here is touched from another thread):

    - ``scopes`` holds the cancel scopes that bound the :func:`lifespan` teardowns now
      running in *fn*'s tasks (those whose context descends from the one
      ``run_until_signal`` gave *fn*); a teardown adds its scope before it starts and
      removes it when it has ended.
    - ``reason`` is ``None`` until the grace has expired or a second signal arrived; from
      then on every scope in ``scopes`` has been cancelled, and a scope added later is
      cancelled as it is added. ``reason`` never goes back to ``None``.
    - Once ``active`` is false (``run_until_signal`` has returned), nothing is added.

    A lifespan on another thread (a context copied into a :class:`concur.Runner` or a new
    loop) does not take part: it finds ``thread`` is not its own, so no scope of another
    loop is ever cancelled from this one.
    """

    __slots__ = ("active", "reason", "scopes", "thread")

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.scopes: set[anyio.CancelScope] = set()
        self.reason: str | None = None
        self.active = True

    def add(self, scope: anyio.CancelScope) -> None:
        self.scopes.add(scope)
        if self.reason is not None:
            scope.cancel()

    def discard(self, scope: anyio.CancelScope) -> None:
        self.scopes.discard(scope)

    def cut(self, reason: str) -> None:
        """Cancel every teardown running now and every one that starts later."""
        if self.reason is None:
            self.reason = reason
        for scope in self.scopes:
            scope.cancel()


#: the current run_until_signal's shutdown state, in the context *fn* runs in
_shutdown_var: Final[contextvars.ContextVar[_Shutdown | None]] = contextvars.ContextVar(
    "concur_shutdown", default=None
)

#: whether a run_until_signal is running (only ever read and written in the main thread)
_running = False


def _current_shutdown() -> _Shutdown | None:
    state = _shutdown_var.get()
    if state is None or not state.active or state.thread != threading.get_ident():
        return None
    return state


# --- run_until_signal -------------------------------------------------------------------------


def _check_signals(signals: object) -> tuple[signal.Signals, ...]:
    if isinstance(signals, (str, bytes)) or not isinstance(signals, Iterable):
        raise TypeError(
            f"signals must be an iterable of signal numbers such as (signal.SIGINT,), "
            f"got {signals!r}"
        )
    checked: list[signal.Signals] = []
    for sig in signals:  # pyright: ignore[reportUnknownVariableType]
        if isinstance(sig, bool) or not isinstance(sig, int):
            raise TypeError(f"signals must hold signal numbers such as signal.SIGTERM, got {sig!r}")
        try:
            member = signal.Signals(sig)
        except ValueError:
            raise ValueError(f"signals: {sig!r} is not a signal number") from None
        if member in _UNCATCHABLE:
            raise ValueError(f"signals: {member.name} cannot be caught; leave it out")
        if member not in checked:
            checked.append(member)
    if not checked:
        raise ValueError("signals must name at least one signal, e.g. (signal.SIGINT,)")
    return tuple(checked)


async def run_until_signal(
    fn: Callable[[*Ts], Awaitable[object]],
    /,
    *args: *Ts,
    signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
    grace: float = 10.0,
) -> signal.Signals | None:
    """Run ``await fn(*args)`` until it returns or one of *signals* arrives.

    The handlers of *signals* are installed before *fn* starts. The first signal cancels
    *fn* and waits for its cleanup: cleanup under :func:`concur.lifespan`'s teardown is
    shielded from that cancellation, but is cancelled once *grace* seconds have passed
    since the first signal, or at once when a second signal arrives. Cleanup under a bare
    ``anyio.CancelScope(shield=True)`` cannot be interrupted and is always waited for.
    Signals after the second are ignored until *fn* has ended. Then the handlers that
    were in place before (``signal.getsignal()``) are restored, and the first signal is
    returned.

    A typical script::

        async def main() -> None:
            async with concur.lifespan(open_db, close_db) as db:
                await serve(db)

        if __name__ == "__main__":
            concur.run(concur.run_until_signal, main)

    Python runs signal handlers only in the main thread, so the loop must run there
    (:func:`concur.run` or :func:`anyio.run` in a script, asyncio or trio). Only one
    ``run_until_signal`` may run at a time. Windows is not supported.

    Args:
        fn: the async function to run.
        args: its positional arguments (use ``functools.partial`` for keywords).
        signals: the signals that stop *fn*; default ``SIGINT`` (Ctrl-C) and ``SIGTERM``.
        grace: seconds from the first signal until lifespan teardowns are cancelled
            (``math.inf``: wait for them; ``0``: cancel them at once).

    Returns:
        The first signal received, as a :class:`signal.Signals` member; ``None`` if *fn*
        returned (or raised) before any signal. *fn*'s return value is discarded.

    Cancellation: cancelling the caller cancels *fn* and waits for its cleanup; signals
    keep working meanwhile (a first one starts the grace, a second cuts lifespan
    teardowns at once). Then the handlers are restored and the cancellation propagates.

    Raises:
        RuntimeError: not in the main thread (inside a :class:`concur.Runner`, a worker
            thread, or :func:`concur.run` called while a loop runs in the thread), or
            another ``run_until_signal`` is running.
        NotImplementedError: on Windows.
        TypeError: *fn* is not an async callable, or *signals* holds a non-number.
        ValueError: *signals* is empty, or holds an unknown or uncatchable signal
            (``SIGKILL``, ``SIGSTOP``); *grace* is negative.
        Exception: *fn*'s own exception, as it is (also one raised during its cleanup
            after a signal).
    """
    global _running
    check_async_function(fn, "run_until_signal")
    sigs = _check_signals(signals)
    grace = check_number(grace, "grace", unit="seconds")
    if sys.platform == "win32":  # pragma: no cover
        raise NotImplementedError("run_until_signal() is not supported on Windows")
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "run_until_signal() must run in the main thread, where Python handles signals; "
            f"it was called in thread {threading.current_thread().name!r} (a concur.Runner, "
            "a worker thread, or concur.run() called while a loop runs in the thread): run "
            "it from concur.run() or anyio.run() in the main thread of a script"
        )
    if _running:
        raise RuntimeError(
            "run_until_signal() is already running; only one may handle signals at a time"
        )
    # Python's own record of the handlers: anyio's receiver on asyncio leaves SIG_DFL (or
    # default_int_handler) behind, so they are restored here, after it has closed. None
    # (a handler set from C) cannot be set again: anyio's choice stands then.
    saved = {sig: signal.getsignal(sig) for sig in sigs}
    _running = True
    try:
        with anyio.open_signal_receiver(*sigs) as receiver:
            return await _run(receiver, fn, args, grace)
    finally:
        _running = False
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


async def _run(
    receiver: AsyncIterator[signal.Signals],
    fn: Callable[..., Awaitable[object]],
    args: tuple[Any, ...],
    grace: float,
) -> signal.Signals | None:
    state = _Shutdown()
    fn_scope = anyio.CancelScope()
    watch_scope = anyio.CancelScope(shield=True)
    received: list[signal.Signals] = []
    error: BaseException | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch, receiver, fn_scope, watch_scope, state, grace, received)
        token = _shutdown_var.set(state)
        try:
            with fn_scope:
                await fn(*args)
        except anyio.get_cancelled_exc_class():
            raise  # the caller's cancellation; the finally block stops the watcher
        except BaseException as exc:  # raised bare below, not wrapped by the task group
            error = exc
        finally:
            _shutdown_var.reset(token)
            state.active = False
            watch_scope.cancel()
    if error is not None:
        try:
            raise error
        finally:
            del error  # no reference cycle through the traceback
    return received[0] if received else None


async def _watch(
    receiver: AsyncIterator[signal.Signals],
    fn_scope: anyio.CancelScope,
    watch_scope: anyio.CancelScope,
    state: _Shutdown,
    grace: float,
    received: list[signal.Signals],
) -> None:
    """Cancel *fn* at the first signal; cut the teardowns at grace or a second signal.

    It runs under *watch_scope*, a shielded scope: a cancellation of the caller does not
    stop it, so signals go on working during *fn*'s cleanup; ``_run`` cancels it when *fn*
    has ended.
    """
    with watch_scope:
        async for sig in receiver:
            received.append(sig)
            fn_scope.cancel()
            break
        reason = f"its grace of {grace:g} seconds expired"
        with anyio.move_on_after(grace):
            async for sig in receiver:
                reason = f"a second signal ({sig.name}) arrived"
                break
        state.cut(reason)
        async for _ in receiver:  # later signals are ignored until fn has ended
            pass


# --- lifespan -------------------------------------------------------------------------------


@overload
def lifespan(
    setup: Callable[[], Awaitable[T]],
    teardown: Callable[[], object],
    *,
    teardown_timeout: float = 10.0,
) -> contextlib.AbstractAsyncContextManager[T]: ...


@overload
def lifespan(
    setup: Callable[[], T], teardown: Callable[[], object], *, teardown_timeout: float = 10.0
) -> contextlib.AbstractAsyncContextManager[T]: ...


def lifespan(
    setup: Callable[[], Awaitable[T]] | Callable[[], T],
    teardown: Callable[[], object],
    *,
    teardown_timeout: float = 10.0,
) -> contextlib.AbstractAsyncContextManager[T]:
    """Run ``setup()`` before the ``async with`` body and ``teardown()`` after it.

    ``async with concur.lifespan(setup, teardown) as value:`` gives setup's return value.
    *setup* and *teardown* take no arguments and may be sync or async (discovered at run
    time); sync ones run in a worker thread through :func:`concur.to_thread`, under the
    ambient limiter.

    - If *setup* raises (or is cancelled), teardown does not run and the error propagates.
    - Teardown runs however the body ends: returning, raising, or cancelled. It is
      shielded from the cancellation of the body and bounded by *teardown_timeout*: a
      teardown still running then is cancelled (a sync one stops only where it calls
      :func:`concur.check_cancelled`, and is waited for).
    - Under :func:`concur.run_until_signal`, the teardown is also cancelled once that
      call's grace has expired, or at a second signal; one that starts after that is
      cancelled as it starts (a sync one then does not run at all).
    - The body's exception (a cancellation included) propagates unchanged. If the body
      raised and the teardown failed too (raised, timed out, or was cut short), the
      teardown's failure is logged on the ``concur`` logger and the body's exception
      propagates.
    - If the body did not raise: a teardown exception propagates as it is; a timeout
      raises ``TimeoutError``; a teardown cut short by ``run_until_signal`` raises the
      pending cancellation (or ``TimeoutError`` if there is none).

    The context manager can be entered once. Cancellation: a cancelled *setup*
    propagates the cancellation (no teardown); a cancelled body runs the teardown as
    above, then the cancellation propagates.

    Args:
        setup: called with no arguments before the body; its result is the ``as`` value.
        teardown: called with no arguments after the body; its result is ignored.
        teardown_timeout: seconds the teardown may take (``math.inf``: unbounded).

    Raises:
        TypeError: *setup* or *teardown* is not callable (or is a coroutine object).
        ValueError: *teardown_timeout* is not positive.
    """
    check_function(setup, "lifespan", arg="setup")
    check_function(teardown, "lifespan", arg="teardown")
    timeout = check_number(teardown_timeout, "teardown_timeout", strict=True, unit="seconds")
    return _Lifespan(setup, teardown, timeout)


@final
class _Lifespan(contextlib.AbstractAsyncContextManager[T]):
    __slots__ = ("_entered", "_setup", "_teardown", "_timeout")

    def __init__(
        self,
        setup: Callable[[], Awaitable[T]] | Callable[[], T],
        teardown: Callable[[], object],
        timeout: float,
    ) -> None:
        self._setup = setup
        self._teardown = teardown
        self._timeout = timeout
        self._entered = False

    async def __aenter__(self) -> T:
        if self._entered:
            raise RuntimeError("a concur.lifespan can be entered only once; make a new one")
        self._entered = True
        value: T = await _call(self._setup)
        return value

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        failure, kind = await self._run_teardown()
        if failure is None:
            return
        if exc is not None:
            if kind == "cut":
                logger.warning("concur.lifespan: %s", failure)
            elif kind == "timeout":
                logger.error("concur.lifespan: %s (the body raised %r)", failure, exc)
            else:
                logger.error(
                    "concur.lifespan: teardown %s raised while the body raised %r",
                    fn_name(self._teardown),
                    exc,
                    exc_info=(type(failure), failure, failure.__traceback__),
                )
            return  # the body's exception propagates unchanged
        if kind == "cut":  # the cancellation that stopped fn is the one to raise
            await anyio.lowlevel.checkpoint_if_cancelled()
        try:
            raise failure
        finally:
            del failure

    async def _run_teardown(self) -> tuple[BaseException | None, str]:
        """Run the teardown shielded and bounded; return its failure (or None) and its
        kind: ``"error"`` (it raised), ``"timeout"``, ``"cut"`` (by run_until_signal)."""
        name = fn_name(self._teardown)
        failure: BaseException | None = None
        bound = anyio.CancelScope(deadline=anyio.current_time() + self._timeout)
        state = _current_shutdown()
        with anyio.CancelScope(shield=True):
            if state is not None:
                state.add(bound)
            try:
                with bound:
                    await _call(self._teardown)
            except Exception as error:
                failure = error
            finally:
                if state is not None:
                    state.discard(bound)
        if failure is not None:
            return failure, "error"
        if not bound.cancelled_caught:
            return None, ""
        if state is not None and state.reason is not None:
            return TimeoutError(
                f"teardown {name} was cancelled by run_until_signal: {state.reason}"
            ), "cut"
        return TimeoutError(
            f"teardown {name} did not finish within teardown_timeout={self._timeout:g} "
            "seconds and was cancelled"
        ), "timeout"


async def _call(fn: Callable[[], Any]) -> Any:
    if is_async_callable(fn):
        return await fn()
    return await concur.to_thread(cast("Callable[[], object]", fn))
