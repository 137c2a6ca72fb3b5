"""Resilience decorators: ``retry`` (sync and async), ``timeout`` and ``limit`` (async).

``retry`` is written here rather than taken from stamina or tenacity: both retried a
native cancellation when told to retry ``BaseException``, and stamina's jitter is an
absolute number of seconds, not a fraction of the delay. Cancellation, ``KeyboardInterrupt``,
``SystemExit`` and ``GeneratorExit`` are never retried, whatever ``on`` says.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import random
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, ParamSpec, TypeVar, cast

import anyio
import anyio.lowlevel
import attrs

import concur
from concur._core.checks import (
    check_function,
    check_int,
    check_number,
    fn_name,
    is_async_function,
)

__all__ = ["limit", "retry", "timeout"]

P = ParamSpec("P")
R = TypeVar("R")

logger: Final = logging.getLogger("concur")

#: how often a sync retry waiting in a concur worker thread looks for cancellation
POLL_INTERVAL: Final = 0.005


def _check_decorated(fn: object, where: str) -> None:
    check_function(fn, f"concur.{where}(...)", args="")


def _refuse_bare(value: object, where: str, arg: str) -> None:
    """A helpful message for ``@concur.retry`` written without its parentheses."""
    if callable(value) and not isinstance(value, anyio.CapacityLimiter):
        raise TypeError(
            f"concur.{where}() takes its {arg} first and returns the decorator: write "
            f"@concur.{where}({'...' if where != 'retry' else ''}), not @concur.{where}"
        )


# --- retry ----------------------------------------------------------------------------------


def _not_retried(cancelled: type[BaseException] | None) -> tuple[type[BaseException], ...]:
    """The exception classes never retried: cancellation (of every backend that is
    loaded, and *cancelled*, the running backend's), interrupts and ``GeneratorExit``."""
    classes: list[type[BaseException]] = [
        asyncio.CancelledError,
        KeyboardInterrupt,
        SystemExit,
        GeneratorExit,
    ]
    trio = sys.modules.get("trio")
    if trio is not None:
        classes.append(cast("type[BaseException]", trio.Cancelled))
    if cancelled is not None:
        classes.append(cancelled)
    return tuple(classes)


def _retryable(
    exc: BaseException,
    on: tuple[type[BaseException], ...],
    never: tuple[type[BaseException], ...],
) -> bool:
    """Whether *exc* may be retried: never a cancellation or interrupt, nor a group
    holding one (checked before *on*), else when it is an instance of *on*."""
    if isinstance(exc, never):
        return False
    if isinstance(exc, BaseExceptionGroup):
        matched, _ = cast("BaseExceptionGroup[BaseException]", exc).split(never)
        if matched is not None:
            return False
    return isinstance(exc, on)


@attrs.frozen
class _Backoff:
    """How long to wait after each failed attempt: ``delay`` after the first, multiplied
    by ``backoff`` after each further one, capped at ``max_delay``, then lengthened by a
    random fraction of itself of at most ``jitter``."""

    attempts: int
    on: tuple[type[BaseException], ...]
    delay: float
    backoff: float
    max_delay: float
    jitter: float

    def pause(self, base: float) -> float:
        if self.jitter == 0:
            return base
        return base * (1.0 + self.jitter * random.random())

    def first_base(self) -> float:
        return min(self.delay, self.max_delay)

    def next_base(self, base: float) -> float:
        return min(base * self.backoff, self.max_delay)

    def log(self, fn: object, attempt: int, pause: float, exc: BaseException) -> None:
        # the pause is an argument of the record, exact, for handlers that want it
        logger.debug(
            "retrying %s in %r s: attempt %d of %d failed with %r",
            fn_name(fn),
            pause,
            attempt,
            self.attempts,
            exc,
        )


def _sleep_in_thread(seconds: float) -> None:
    """Wait *seconds* in sync code: in a concur (or anyio) worker thread, look for the
    caller's cancellation at once and then every ``POLL_INTERVAL`` (raising it);
    elsewhere, ``time.sleep``."""
    try:
        concur.check_cancelled()
    except RuntimeError:  # not in a worker thread (anyio.NoEventLoopError): nothing to poll
        time.sleep(seconds)
        return
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(remaining, POLL_INTERVAL))
        concur.check_cancelled()


def _check_on(on: object) -> tuple[type[BaseException], ...]:
    classes: tuple[object, ...] = cast("tuple[object, ...]", on) if isinstance(on, tuple) else (on,)
    if not classes:
        raise ValueError("on must name at least one exception class, got ()")
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(
                f"on must be an exception class or a tuple of them, such as "
                f"(ConnectionError, TimeoutError), got {on!r}"
            )
    return cast("tuple[type[BaseException], ...]", classes)


def _finite(value: object, name: str, *, minimum: float = 0.0) -> float:
    number = check_number(value, name, minimum=minimum)
    if math.isinf(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def retry(
    attempts: int = 3,
    *,
    on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
    delay: float = 0.1,
    backoff: float = 2.0,
    max_delay: float = 10.0,
    jitter: float = 0.1,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Call the decorated function up to *attempts* times, until it does not raise.

    After the n-th failed attempt it waits ``min(delay * backoff ** (n - 1), max_delay)``
    seconds, lengthened by a random fraction of that wait of at most *jitter* (``0.1``:
    up to +10%), then tries again. Each retry is logged at DEBUG on the ``concur`` logger.
    A decorated async function stays async and waits with ``anyio.sleep``; a decorated
    sync function stays sync: in a worker thread of :func:`concur.to_thread` (or
    :func:`concur.call`) its wait looks for the caller's cancellation every 5 ms through
    :func:`concur.check_cancelled`, elsewhere it is ``time.sleep``.

    Cancellation (asyncio's and trio's), ``KeyboardInterrupt``, ``SystemExit`` and
    ``GeneratorExit``, and exception groups holding one of them, are never retried,
    whatever *on* says: they propagate at once. Other exceptions are retried when they are
    instances of *on* (an ``ExceptionGroup`` is matched as a whole, as ``except`` does).

    Args:
        attempts: how many calls at most (``1``: no retry).
        on: the exception class, or tuple of classes, that are retried.
        delay: seconds to wait after the first failure (``0``: retry at once).
        backoff: the factor (at least 1) applied to the wait after each further failure.
        max_delay: the longest wait before jitter, the first one included (``math.inf``:
            no cap).
        jitter: the most the wait is lengthened, as a fraction of it (``0``: none).

    Returns:
        The decorator. The decorated function returns the first result; when every
        attempt failed, or an exception is not retried, that last exception propagates
        as it was raised.

    Raises:
        TypeError: an argument has the wrong type (*on* must hold exception classes), or
            the decorated object is a coroutine object, a generator function or not
            callable.
        ValueError: ``attempts < 1``, a negative or infinite *delay* or *jitter*,
            ``backoff < 1``, a negative *max_delay*, or an empty *on*; raised by
            ``retry(...)`` itself, at decoration.

    Cancellation: the call being tried is cancelled as any call is; the wait between
    attempts ends at once (async) or within 5 ms (sync, in a worker thread) and the
    cancellation propagates; nothing is tried after it.
    """
    _refuse_bare(attempts, "retry", "options")
    policy = _Backoff(
        attempts=check_int(attempts, "attempts"),
        on=_check_on(on),
        delay=_finite(delay, "delay"),
        backoff=_finite(backoff, "backoff", minimum=1.0),
        max_delay=check_number(max_delay, "max_delay"),
        jitter=_finite(jitter, "jitter"),
    )

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        _check_decorated(fn, "retry")
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"@concur.retry cannot retry the generator function {fn_name(fn)}: calling "
                f"it never fails, iterating does; retry a function that consumes it"
            )
        if is_async_function(fn):
            return cast("Callable[P, R]", _retry_async(cast(Any, fn), policy))
        return _retry_sync(fn, policy)

    return decorate


def _retry_async(
    fn: Callable[P, Awaitable[R]], policy: _Backoff
) -> Callable[P, Coroutine[Any, Any, R]]:
    @functools.wraps(fn)
    async def retrying(*args: P.args, **kwargs: P.kwargs) -> R:
        never = _not_retried(anyio.get_cancelled_exc_class())
        base = policy.first_base()
        attempt = 1
        while True:
            try:
                return await fn(*args, **kwargs)
            except BaseException as exc:
                if attempt >= policy.attempts or not _retryable(exc, policy.on, never):
                    raise
                pause = policy.pause(base)
                policy.log(fn, attempt, pause, exc)
            # outside the except block: a cancellation of the wait is not chained to exc
            await anyio.sleep(pause)
            base = policy.next_base(base)
            attempt += 1

    return retrying


def _retry_sync(fn: Callable[P, R], policy: _Backoff) -> Callable[P, R]:
    @functools.wraps(fn)
    def retrying(*args: P.args, **kwargs: P.kwargs) -> R:
        base = policy.first_base()
        attempt = 1
        while True:
            try:
                return fn(*args, **kwargs)
            except BaseException as exc:
                never = _not_retried(None)
                if attempt >= policy.attempts or not _retryable(exc, policy.on, never):
                    raise
                pause = policy.pause(base)
                policy.log(fn, attempt, pause, exc)
            _sleep_in_thread(pause)
            base = policy.next_base(base)
            attempt += 1

    return retrying


# --- timeout and limit ----------------------------------------------------------------------


def _check_async(fn: object, where: str) -> None:
    _check_decorated(fn, where)
    if not is_async_function(fn):
        name = fn_name(fn)
        raise TypeError(
            f"@concur.{where} applies to async functions; {name} is sync: make it async, "
            f"or decorate an async function that runs it with concur.to_thread({name}, ...)"
        )


def timeout(
    seconds: float,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Raise ``TimeoutError`` when a call of the decorated async function takes more than
    *seconds*.

    The call is cancelled at its deadline (a sync call it awaits in a worker thread is
    waited for, see :func:`concur.to_thread`), then ``TimeoutError`` is raised. Each call
    has its own deadline, measured from its start.

    Args:
        seconds: the time allowed to each call (``0``: fail at the first checkpoint;
            ``math.inf``: no limit).

    Returns:
        The decorator; the decorated function stays async.

    Raises:
        TypeError: *seconds* is not a number, or the decorated function is not async;
            raised at decoration.
        ValueError: *seconds* is negative; raised by ``timeout(...)`` itself.

    Cancellation: cancelling the caller cancels the call as usual; the cancellation
    propagates, not ``TimeoutError``.
    """
    _refuse_bare(seconds, "timeout", "seconds")
    allowed = check_number(seconds, "seconds", unit="seconds")

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        _check_async(fn, "timeout")

        @functools.wraps(fn)
        async def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            with anyio.fail_after(allowed):
                return await fn(*args, **kwargs)

        return timed

    return decorate


def limit(
    n_or_limiter: int | anyio.CapacityLimiter, /
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Let at most *n* calls of the decorated async function run at once, across all
    callers.

    With an int, the decorated function gets its own limiter of *n* tokens per event-loop
    run (an ``anyio.lowlevel.RunVar``): a decorator runs at import time, and one process
    may run several loops, one after another or in several threads. With an
    ``anyio.CapacityLimiter``, that limiter is used as it is, so several functions can
    share it. Each call holds one token (borrowed on behalf of the call, not of the task)
    from before it starts until it returns; waiting calls are served first come, first
    served. A limited function that awaits itself (or another function on the same
    limiter) takes a second token, so with *n* = 1 it waits forever.

    Args:
        n_or_limiter: the most concurrent calls (an int of at least 1), or the limiter.

    Returns:
        The decorator; the decorated function stays async.

    Raises:
        TypeError: *n_or_limiter* is neither an int nor a limiter, or the decorated
            function is not async; raised at decoration.
        ValueError: *n_or_limiter* is less than 1.

    Cancellation: a call cancelled while it waits for a token never starts and takes no
    token; a running call is cancelled as usual and gives its token back when it ends.
    """
    _refuse_bare(n_or_limiter, "limit", "n_or_limiter")
    if isinstance(n_or_limiter, anyio.CapacityLimiter):
        shared = n_or_limiter

        def current() -> anyio.CapacityLimiter:
            return shared

    else:
        try:
            total = check_int(n_or_limiter, "n_or_limiter")
        except TypeError as exc:
            raise TypeError(f"{exc}; or pass an anyio.CapacityLimiter to share") from None
        per_run: anyio.lowlevel.RunVar[anyio.CapacityLimiter] = anyio.lowlevel.RunVar(
            "concur.limit"
        )

        def current() -> anyio.CapacityLimiter:
            # on the loop's thread, with no checkpoint between get and set: one per run
            limiter = per_run.get(None)
            if limiter is None:
                limiter = anyio.CapacityLimiter(total)
                per_run.set(limiter)
            return limiter

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        _check_async(fn, "limit")

        @functools.wraps(fn)
        async def limited(*args: P.args, **kwargs: P.kwargs) -> R:
            limiter = current()
            borrower = object()  # one token per call, even for nested calls of one task
            await limiter.acquire_on_behalf_of(borrower)
            try:
                return await fn(*args, **kwargs)
            finally:
                limiter.release_on_behalf_of(borrower)

        return limited

    return decorate
