"""Strategies: run a list of actions on one value in sequence, concurrently or in stages.

Each strategy's ``run(actions, value, *, timeout=None)`` calls every action with *value*
through :func:`concur.call` (async actions on the loop, sync ones in worker threads under
the ambient limiter, with handoff) and reports one outcome per action, in action order:
``Ok(result)``, ``Err(error)`` or ``Skipped(reason)``. Nothing outlives ``run``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, Literal, NoReturn, TypeAlias, cast, final

import anyio
import anyio.lowlevel
import attrs

import concur
from concur._core.checks import check_function, check_int, check_timeout

__all__ = ["ActionSkipped", "Concurrent", "Pipeline", "Sequential", "Skipped"]

#: An action: a sync or async callable taking the value.
Action: TypeAlias = "Callable[[Any], Awaitable[Any]] | Callable[[Any], Any]"

SkipReason: TypeAlias = Literal["not run", "cancelled"]
_REASONS: Final = ("not run", "cancelled")


class ActionSkipped(concur.ConcurError, RuntimeError):
    """Raised by :meth:`Skipped.unwrap`: the action has no result because it was skipped.

    Attributes:
        reason: ``"not run"`` (never started because of an earlier error) or
            ``"cancelled"`` (cancelled by ``Concurrent(cancel_on_first_error=True)``).
    """

    reason: str

    def __init__(self, reason: str) -> None:
        super().__init__(f"the action was skipped ({reason}), so it has no result")
        self.reason = reason

    def __reduce__(self) -> tuple[type[ActionSkipped], tuple[str]]:
        return type(self), (self.reason,)


def _check_reason(instance: object, attribute: attrs.Attribute[SkipReason], value: str) -> None:
    if value not in _REASONS:
        raise ValueError(f"reason must be 'not run' or 'cancelled', got {value!r}")


@final
@attrs.frozen
class Skipped:
    """The outcome of an action that a strategy did not run to the end.

    ``Skipped("not run")``: the action never started because an earlier action failed.
    ``Skipped("cancelled")``: it was running and ``Concurrent(cancel_on_first_error=True)``
    cancelled it.
    """

    reason: Literal["not run", "cancelled"] = attrs.field(validator=_check_reason)
    """``"not run"`` or ``"cancelled"``."""

    @property
    def is_ok(self) -> Literal[False]:
        """Always ``False``."""
        return False

    def unwrap(self) -> NoReturn:
        """Raise :class:`concur.ActionSkipped` with this ``reason``."""
        raise ActionSkipped(self.reason)


#: The outcome of one action: ``Ok(result)``, ``Err(error)`` or ``Skipped(reason)``.
ActionOutcome: TypeAlias = "concur.Ok[Any] | concur.Err | Skipped"

_NOT_RUN: Final = Skipped("not run")
_CANCELLED: Final = Skipped("cancelled")


# --- validation -----------------------------------------------------------------------------


def _check_bool(instance: object, attribute: attrs.Attribute[bool], value: bool) -> None:
    if type(value) is not bool:  # pyright: ignore[reportUnnecessaryComparison]
        raise TypeError(f"{attribute.name} must be True or False, got {value!r}")


def _check_limit(
    instance: object, attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    if value is not None:
        check_int(value, attribute.name)


def _prepare(actions: object, timeout: object, where: str) -> list[Action]:
    """*actions* as a list of callables, or ``TypeError`` naming the bad one."""
    check_timeout(timeout)
    if isinstance(actions, (str, bytes)) or not isinstance(actions, Iterable):
        raise TypeError(
            f"{where}.run() takes a list of actions (callables taking the value), got "
            f"{type(actions).__name__} {actions!r}"
        )
    listed: list[object] = list(actions)  # pyright: ignore[reportUnknownArgumentType]
    for i, action in enumerate(listed):
        try:
            check_function(action, f"{where}.run", arg=f"actions[{i}]")
        except TypeError:
            for other in listed:  # no "never awaited" warnings for the others
                if inspect.iscoroutine(other):
                    other.close()
            raise
    return listed  # type: ignore[return-value]


# --- running actions ------------------------------------------------------------------------

_INTERRUPTS: Final = (KeyboardInterrupt, SystemExit)


def _first_interrupt(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found = _first_interrupt(exc)  # pyright: ignore[reportUnknownArgumentType]
            if found is not None:
                return found
        elif isinstance(exc, _INTERRUPTS):
            return exc
    return None


async def _settle(
    action: Action, value: object, timeout: float | None
) -> concur.Ok[Any] | concur.Err:
    """Run one action and return its outcome.

    A cancellation and an interrupt (``KeyboardInterrupt``, ``SystemExit``) propagate; a
    group of failures and cancellations (an action's own task group cancelled while a
    child failed) is its failures: the cancellation is the caller's, and a cancelled scope
    raises it again at the next checkpoint.
    """
    try:
        return concur.Ok(await concur.call(action, value, timeout=timeout))
    except Exception as exc:
        return concur.Err(exc)
    except BaseExceptionGroup as group:
        interrupt = _first_interrupt(group)
        if interrupt is not None:
            raise interrupt from None
        failures, _ = group.split(Exception)
        if failures is None:
            raise
        return concur.Err(failures)


async def _run_concurrently(
    actions: Sequence[Action],
    indexes: Sequence[int],
    value: object,
    timeout: float | None,
    limit: int | None,
    cancel_on_first_error: bool,
    outcomes: list[ActionOutcome | None],
) -> bool:
    """Run the actions at *indexes* concurrently, at most *limit* at once, starting them in
    the order of *indexes*; fill in their *outcomes*. Return whether one failed.

    Invariant: only the event loop's thread touches ``pending``, ``started`` and
    ``outcomes`` (workers are tasks, and an index is taken with ``next`` between
    checkpoints), so each index is run by exactly one worker, and an index is in
    ``started`` exactly when its action was called.
    """
    pending = iter(indexes)
    started: set[int] = set()
    failed = False
    interrupts: list[BaseException] = []
    scope = anyio.CancelScope()

    async def worker() -> None:
        nonlocal failed
        for i in pending:
            if scope.cancel_called:
                return
            started.add(i)
            try:
                outcome = outcomes[i] = await _settle(actions[i], value, timeout)
            except _INTERRUPTS as exc:
                # caught in the task (on asyncio it would escape the event loop), raised
                # bare by the caller once the other actions are cancelled
                interrupts.append(exc)
                scope.cancel()
                return
            if not outcome.is_ok:
                failed = True
                if cancel_on_first_error:
                    scope.cancel()
                    return

    workers = len(indexes) if limit is None else min(limit, len(indexes))
    try:
        with scope:
            async with anyio.create_task_group() as group:
                for _ in range(workers):
                    group.start_soon(worker)
    except BaseExceptionGroup as group:  # pragma: no cover - workers raise cancellations only
        interrupt = _first_interrupt(group)
        if interrupt is not None:
            raise interrupt from None
        raise
    if interrupts:
        raise interrupts[0]
    # our own scope absorbed its cancellation; an outside one is raised here
    await anyio.lowlevel.checkpoint_if_cancelled()
    for i in indexes:
        if outcomes[i] is None:
            outcomes[i] = _CANCELLED if i in started else _NOT_RUN
    return failed


def _done(outcomes: list[ActionOutcome | None]) -> list[ActionOutcome]:
    return [_NOT_RUN if outcome is None else outcome for outcome in outcomes]


# --- the strategies -------------------------------------------------------------------------


@final
@attrs.frozen(kw_only=True)
class Sequential:
    """Run the actions one after the other, in order.

    Args:
        stop_on_error: when an action fails, report the later ones ``Skipped("not run")``
            (the default) instead of running them.
    """

    stop_on_error: bool = attrs.field(default=True, validator=_check_bool)
    """Whether a failure skips the later actions."""

    async def run(
        self, actions: Iterable[Action], value: object, *, timeout: float | None = None
    ) -> list[ActionOutcome]:
        """Call each action with *value*, one after the other.

        Args:
            actions: sync or async callables taking *value*.
            value: the value passed to each action (handed off to each sync action).
            timeout: seconds allowed to each action (``TimeoutError`` as its ``Err``);
                defaults to the ambient :class:`concur.scope`'s.

        Returns:
            One outcome per action, in action order.

        Raises:
            TypeError: an action is not callable (or is a coroutine object), or *timeout*
                is not a number.
            ValueError: *timeout* is negative.

        Cancellation: the running action is cancelled (a sync one's thread is waited for,
        as in :func:`concur.call`), the later ones never start, and the cancellation
        propagates: no outcomes are returned.
        """
        listed = _prepare(actions, timeout, "Sequential")
        outcomes: list[ActionOutcome | None] = [None] * len(listed)
        for i, action in enumerate(listed):
            outcome = outcomes[i] = await _settle(action, value, timeout)
            if not outcome.is_ok and self.stop_on_error:
                break
        # a cancellation an action's failure hid (see _settle) is raised here
        await anyio.lowlevel.checkpoint_if_cancelled()
        return _done(outcomes)


@final
@attrs.frozen(kw_only=True)
class Concurrent:
    """Run the actions concurrently, at most *limit* at once, started in action order.

    Args:
        limit: the most actions running at once, or ``None`` (the default) for all.
        cancel_on_first_error: when an action fails, cancel the running ones (reported
            ``Skipped("cancelled")``) and start no more (``Skipped("not run")``); by
            default every action runs to the end.
    """

    limit: int | None = attrs.field(default=None, validator=_check_limit)
    """The most actions running at once (``None``: no limit)."""
    cancel_on_first_error: bool = attrs.field(default=False, validator=_check_bool)
    """Whether the first failure cancels the other actions."""

    async def run(
        self, actions: Iterable[Action], value: object, *, timeout: float | None = None
    ) -> list[ActionOutcome]:
        """Call every action with *value* concurrently.

        Sync actions run in worker threads under the ambient limiter (see
        :func:`concur.call`), so the number of threads is capped by it as well as by
        *limit*. With ``cancel_on_first_error``, an action that was cancelled but had
        already returned keeps its ``Ok``, and one that raised its own exception while
        being cancelled keeps its ``Err``.

        Args:
            actions: sync or async callables taking *value*.
            value: the value passed to each action (handed off to each sync action).
            timeout: seconds allowed to each action (``TimeoutError`` as its ``Err``);
                defaults to the ambient :class:`concur.scope`'s.

        Returns:
            One outcome per action, in action order.

        Raises:
            TypeError: an action is not callable (or is a coroutine object), or *timeout*
                is not a number.
            ValueError: *timeout* is negative.

        Cancellation: every running action is cancelled and waited for (a sync one's
        thread too), the others never start, and the cancellation propagates: no outcomes
        are returned.
        """
        listed = _prepare(actions, timeout, "Concurrent")
        outcomes: list[ActionOutcome | None] = [None] * len(listed)
        await _run_concurrently(
            listed,
            range(len(listed)),
            value,
            timeout,
            self.limit,
            self.cancel_on_first_error,
            outcomes,
        )
        return _done(outcomes)


def _convert_stages(stages: object) -> tuple[tuple[int, ...], ...]:
    if isinstance(stages, (str, bytes)) or not isinstance(stages, Iterable):
        raise TypeError(
            f"stages must be a list of lists of action indexes, such as [[0], [1, 2]], got "
            f"{type(stages).__name__} {stages!r}"
        )
    converted: list[tuple[int, ...]] = []
    seen: dict[int, int] = {}
    for s, stage in enumerate(cast("Iterable[object]", stages)):
        if isinstance(stage, (str, bytes)) or not isinstance(stage, Iterable):
            raise TypeError(
                f"stages[{s}] must be a list of action indexes, got "
                f"{type(stage).__name__} {stage!r}"
            )
        indexes = tuple(cast("Iterable[object]", stage))
        if not indexes:
            raise ValueError(f"stages[{s}] is empty: every stage of stages needs an action")
        for j, index in enumerate(indexes):
            checked = check_int(index, f"stages[{s}][{j}]", minimum=0)
            if checked in seen:
                raise ValueError(
                    f"stages: action {checked} appears in stage {seen[checked]} and stage "
                    f"{s}; each action index must appear in exactly one stage"
                )
            seen[checked] = s
        converted.append(cast("tuple[int, ...]", indexes))
    return tuple(converted)


@final
@attrs.frozen
class Pipeline:
    """Run the actions in stages: stages one after the other, the actions of a stage
    concurrently.

    Args:
        stages: lists of action indexes, such as ``[[0], [1, 2], [3]]``; each index of
            the actions passed to :meth:`run` appears in exactly one stage.
        stop_on_error: when an action fails, let the other actions of its stage run to
            the end, then report the later stages ``Skipped("not run")`` (the default)
            instead of running them.

    Raises:
        TypeError: *stages* is not a list of lists of ints.
        ValueError: a stage is empty, an index is negative or appears twice.
    """

    stages: tuple[tuple[int, ...], ...] = attrs.field(converter=_convert_stages)
    """The stages, as tuples of action indexes."""
    stop_on_error: bool = attrs.field(default=True, kw_only=True, validator=_check_bool)
    """Whether a failure skips the later stages."""

    async def run(
        self, actions: Iterable[Action], value: object, *, timeout: float | None = None
    ) -> list[ActionOutcome]:
        """Call every action with *value*, stage by stage.

        Args:
            actions: sync or async callables taking *value*; there must be exactly one
                per index of ``stages``.
            value: the value passed to each action (handed off to each sync action).
            timeout: seconds allowed to each action (``TimeoutError`` as its ``Err``);
                defaults to the ambient :class:`concur.scope`'s.

        Returns:
            One outcome per action, in action order (not stage order).

        Raises:
            TypeError: an action is not callable (or is a coroutine object), or *timeout*
                is not a number.
            ValueError: ``stages`` names an index out of range for *actions*, or leaves an
                action out; *timeout* is negative.

        Cancellation: the running stage's actions are cancelled and waited for (a sync
        one's thread too), the later stages never start, and the cancellation propagates:
        no outcomes are returned.
        """
        listed = _prepare(actions, timeout, "Pipeline")
        count = len(listed)
        named = {index for stage in self.stages for index in stage}
        out_of_range = sorted(index for index in named if index >= count)
        if out_of_range:
            raise ValueError(
                f"stages names action {out_of_range[0]}, out of range for {count} actions "
                f"(indexes 0 to {count - 1})"
            )
        missing = sorted(set(range(count)) - named)
        if missing:
            raise ValueError(
                f"stages leaves out action {missing[0]}: each of the {count} actions must "
                f"appear in exactly one stage"
            )
        outcomes: list[ActionOutcome | None] = [None] * count
        for stage in self.stages:
            failed = await _run_concurrently(listed, stage, value, timeout, None, False, outcomes)
            if failed and self.stop_on_error:
                break
        return _done(outcomes)
