"""The error rule, written once: concur.collapse and the helpers' task group."""

from __future__ import annotations

import asyncio

import anyio
import pytest
import trio

import concur


class Boom(Exception):
    """A real failure."""


def test_one_failure_among_cancellations_is_that_failure() -> None:
    """One real failure plus cancellations (of either backend) collapses to the failure."""
    boom = Boom()
    for cancelled in (asyncio.CancelledError(), trio.Cancelled._create()):
        group = BaseExceptionGroup("g", [cancelled, boom, cancelled])
        assert concur.collapse(group) is boom


def test_a_lone_member_group_is_not_flattened() -> None:
    """A member that is itself a group is returned as it is."""
    inner = ExceptionGroup("inner", [Boom(), Boom()])
    assert concur.collapse(ExceptionGroup("outer", [inner])) is inner
    single = ExceptionGroup("single", [Boom()])
    assert concur.collapse(ExceptionGroup("outer", [single])) is single


def test_two_failures_stay_a_group() -> None:
    """Two or more real failures: the group itself."""
    group = ExceptionGroup("g", [Boom(), ValueError()])
    assert concur.collapse(group) is group


def test_nothing_but_cancellations_stays_a_group() -> None:
    """Only cancellations (nested ones too): the group, for the cancel scopes to catch."""
    nested = BaseExceptionGroup("n", [asyncio.CancelledError()])
    group = BaseExceptionGroup("g", [asyncio.CancelledError(), nested])
    assert concur.collapse(group) is group


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_wins_at_any_depth(kind: type[BaseException]) -> None:
    """A KeyboardInterrupt or SystemExit anywhere in the group is returned bare, first found."""
    interrupt = kind()
    nested = BaseExceptionGroup("n", [Boom(), interrupt])
    group = BaseExceptionGroup("g", [Boom(), nested, KeyboardInterrupt()])
    assert concur.collapse(group) is interrupt


def test_collapse_never_raises_and_needs_no_loop() -> None:
    """Called outside any event loop, on any group, it returns an exception."""
    for group in (
        ExceptionGroup("g", [Boom()]),
        BaseExceptionGroup("g", [GeneratorExit()]),
    ):
        assert isinstance(concur.collapse(group), BaseException)


async def test_a_users_helper_gets_the_rule() -> None:
    """The documented recipe: a user's own anyio task group raises the lone failure bare."""

    async def fail() -> None:
        raise Boom

    async def helper() -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(fail)
                tg.start_soon(anyio.sleep_forever)
        except BaseExceptionGroup as group:
            raise concur.collapse(group) from None

    with pytest.raises(Boom):
        await helper()
