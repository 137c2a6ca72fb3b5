"""The ambient settings for component calls, and :class:`scope`, which sets them."""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Final, TypeVar, final

import anyio

if TYPE_CHECKING:  # at run time anyio imports these on first use
    import anyio.lowlevel
    import anyio.to_thread

from .checks import check_int, check_timeout
from .handoff import POLICIES, Policy

__all__ = [
    "DEFAULT_SETTINGS",
    "Options",
    "PerRunLimiter",
    "Settings",
    "bounded",
    "current_settings",
    "in_event_loop",
    "same",
    "scope",
    "settings_var",
]

T = TypeVar("T")


# --- the per-call timeout, applied in one place ------------------------------------------------


async def bounded(
    timeout: float | None, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any
) -> T:
    """Await ``fn(*args, **kwargs)``, bounded by *timeout* seconds (``TimeoutError``).

    *timeout* is the per-call timeout already resolved: ``None`` is no bound at all (the
    caller looked up the ambient one before: ``timeout if given else settings.timeout``),
    ``math.inf`` too (it replaces an ambient bound). To bound an awaitable already made,
    pass ``same`` as *fn*: ``bounded(timeout, same, coro)``.
    """
    if timeout is None:
        return await fn(*args, **kwargs)
    with anyio.fail_after(timeout):
        return await fn(*args, **kwargs)


def same(value: Awaitable[T], /) -> Awaitable[T]:
    """*value* itself (lets :func:`bounded` await an awaitable made beforehand)."""
    return value


@final
class PerRunLimiter:
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


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """The ambient settings in force for component calls in the current context.

    Attributes:
        limiter: the limiter an enclosing :class:`scope` or TaskGroup set, else ``None``
            (a ``scope(thread_limit=N)`` entered outside an event loop sets a per-run
            limiter: :meth:`current_limiter` gives the running loop's own).
        handoff: the handoff policy.
        timeout: the per-call timeout in seconds, or ``None``.
    """

    limiter: anyio.CapacityLimiter | PerRunLimiter | None = None
    handoff: Policy = "warn"
    timeout: float | None = None

    def current_limiter(self) -> anyio.CapacityLimiter:
        """The limiter for thread calls here (anyio's default one if none was set)."""
        limiter = self.limiter
        if limiter is None:
            return anyio.to_thread.current_default_thread_limiter()
        if type(limiter) is PerRunLimiter:
            return limiter.get()
        return limiter


DEFAULT_SETTINGS: Final = Settings()
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


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """The settings a :class:`scope` or a TaskGroup was given, validated; ``None``: inherit.

    The one place where given options and inherited settings meet (:meth:`over`).
    """

    thread_limit: int | None = None
    limiter: anyio.CapacityLimiter | PerRunLimiter | None = None
    handoff: Policy | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        thread_limit, limiter, handoff = self.thread_limit, self.limiter, self.handoff
        if thread_limit is not None and limiter is not None:
            raise ValueError("give either thread_limit= or limiter=, not both")
        known = isinstance(handoff, str)  # pyright: ignore[reportUnnecessaryIsInstance]
        if handoff is not None and not (known and handoff in POLICIES):
            error = ValueError if known else TypeError
            raise error(f'handoff must be "warn", "strict" or "off", got {handoff!r}')
        if limiter is not None and not isinstance(limiter, (anyio.CapacityLimiter, PerRunLimiter)):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(
                f"limiter must be an anyio.CapacityLimiter, got {type(limiter).__name__}"
            )
        check_timeout(self.timeout)
        if thread_limit is not None:
            check_int(thread_limit, "thread_limit")

    def with_limiter(self, in_loop: bool) -> Options:
        """These options with *thread_limit* made into a limiter: one for this event loop
        (*in_loop*), else one per event-loop run."""
        total = self.thread_limit
        if total is None:
            return self
        limiter = anyio.CapacityLimiter(total) if in_loop else PerRunLimiter(total)
        return dataclasses.replace(self, thread_limit=None, limiter=limiter)

    def over(self, parent: Settings) -> Settings:
        """The settings in force where these options are entered under *parent*."""
        return Settings(
            limiter=parent.limiter if self.limiter is None else self.limiter,
            handoff=parent.handoff if self.handoff is None else self.handoff,
            timeout=parent.timeout if self.timeout is None else self.timeout,
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
        self._own = Options(thread_limit, limiter, handoff, timeout).with_limiter(in_event_loop())

    @property
    def settings(self) -> Settings:
        """The settings this scope puts in force, entered here and now."""
        return self._own.over(settings_var.get())

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


def in_event_loop() -> bool:
    try:
        anyio.lowlevel.current_token()
    except RuntimeError:
        return False
    return True
