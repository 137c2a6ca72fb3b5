"""Randomized stress test of the strategies (Sequential, Concurrent, Pipeline) on asyncio
and trio: random actions under a random strategy, sometimes cancelled from outside."""

from __future__ import annotations

import contextlib
import itertools
import threading
import warnings
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import concur

# When a test fails, hypothesis's pytest plugin imports libcst to suggest a patch, and that
# import warns; under warnings-as-errors the report would end in an INTERNALERROR that hides
# the falsifying example. Import it now (as test_stress.py does).
with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401


class Boom(Exception):
    """The failure an action raises on purpose."""


# --- randomized stress ----------------------------------------------------------------------

KINDS = ("ok", "fail", "slow", "sync_ok", "sync_fail")


class Tracker:
    """What the actions of one run did (async ones on the loop, sync ones in threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # held for every update: sync actions run in threads
        self.now = 0
        self.peak = 0
        self.clock = 0
        self.started: dict[int, int] = {}  # action -> tick when it started
        self.ended: dict[int, int] = {}  # action -> tick when it ended (any way)
        self.cancelled: set[int] = set()

    def start(self, i: int) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.clock += 1
            self.started[i] = self.clock

    def end(self, i: int) -> None:
        with self.lock:
            self.now -= 1
            self.clock += 1
            self.ended[i] = self.clock

    def action(self, i: int, kind: str, steps: int) -> Any:
        if kind.startswith("sync"):

            def sync_action(value: object) -> int:
                self.start(i)
                try:
                    if kind == "sync_fail":
                        raise Boom(i)
                    return i
                finally:
                    self.end(i)

            return sync_action

        async def async_action(value: object) -> int:
            self.start(i)
            try:
                for _ in range(steps * (3 if kind == "slow" else 1)):
                    await anyio.lowlevel.checkpoint()
                if kind == "fail":
                    raise Boom(i)
                return i
            except anyio.get_cancelled_exc_class():
                self.cancelled.add(i)
                raise
            finally:
                self.end(i)

        return async_action


def check_outcomes(strategy: Any, kinds: list[str], outcomes: list[Any], tracker: Tracker) -> None:
    """The promises of the strategies, for one run that was not cancelled from outside."""
    assert len(outcomes) == len(kinds)
    assert tracker.now == 0
    stops = isinstance(strategy, concur.Concurrent) and strategy.cancel_on_first_error
    stops = stops or getattr(strategy, "stop_on_error", False)
    failed = any(isinstance(o, concur.Err) for o in outcomes)
    for i, (kind, outcome) in enumerate(zip(kinds, outcomes, strict=True)):
        if isinstance(outcome, concur.Ok):
            assert outcome.value == i
            assert kind in ("ok", "slow", "sync_ok")
        elif isinstance(outcome, concur.Err):
            assert isinstance(outcome.error, Boom)
            assert outcome.error.args == (i,)
            assert kind in ("fail", "sync_fail")
        else:
            assert isinstance(outcome, concur.Skipped)
            assert stops
            assert failed
            if outcome.reason == "not run":
                assert i not in tracker.started
            else:
                assert isinstance(strategy, concur.Concurrent)
                assert i in tracker.started or kind.startswith("sync")
                assert i in tracker.cancelled or kind.startswith("sync")
    if not stops:
        assert all(not isinstance(o, concur.Skipped) for o in outcomes)
    if isinstance(strategy, concur.Concurrent) and strategy.limit is not None:
        assert tracker.peak <= strategy.limit
    if isinstance(strategy, concur.Sequential):
        assert tracker.peak <= 1
    if isinstance(strategy, concur.Pipeline):
        for earlier, later in itertools.pairwise(strategy.stages):
            ends = [tracker.ended[i] for i in earlier if i in tracker.ended]
            starts = [tracker.started[i] for i in later if i in tracker.started]
            if ends and starts:
                assert max(ends) < min(starts)


@st.composite
def runs(draw: st.DrawFn) -> tuple[Any, list[str], list[int], int | None]:
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=10))
    steps = draw(st.lists(st.integers(0, 4), min_size=len(kinds), max_size=len(kinds)))
    which = draw(st.sampled_from(["sequential", "concurrent", "pipeline"]))
    strategy: Any
    if which == "sequential":
        strategy = concur.Sequential(stop_on_error=draw(st.booleans()))
    elif which == "concurrent":
        strategy = concur.Concurrent(
            limit=draw(st.none() | st.integers(1, 4)),
            cancel_on_first_error=draw(st.booleans()),
        )
    else:
        order = draw(st.permutations(range(len(kinds))))
        cuts = (
            sorted(set(draw(st.lists(st.integers(1, len(kinds) - 1), max_size=3))))
            if len(kinds) > 1
            else []
        )
        bounds = [0, *cuts, len(kinds)]
        stages = [order[a:b] for a, b in itertools.pairwise(bounds)]
        strategy = concur.Pipeline(stages, stop_on_error=draw(st.booleans()))
    cancel_after = draw(st.none() | st.integers(0, 12))
    return strategy, kinds, steps, cancel_after


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(run=runs())
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_strategies_keep_their_promises_under_random_load(
    backend: str, run: tuple[Any, list[str], list[int], int | None]
) -> None:
    """Random actions (quick, slow, failing, sync) under a random strategy, sometimes
    cancelled from outside at a random moment: outcomes in action order and of the right
    kind, skips only after a failure and truthful about starting, limits and stage order
    kept, and nothing left running."""
    strategy, kinds, steps, cancel_after = run
    tracker = Tracker()
    actions = [
        tracker.action(i, kind, n) for i, (kind, n) in enumerate(zip(kinds, steps, strict=True))
    ]
    result: list[list[Any]] = []

    async def main() -> bool:
        with anyio.fail_after(10):
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as group:
                    if cancel_after is not None:

                        async def cancel() -> None:
                            for _ in range(cancel_after):
                                await anyio.lowlevel.checkpoint()
                            scope.cancel()

                        group.start_soon(cancel)
                    result.append(await strategy.run(actions, None))
                    group.cancel_scope.cancel()
            return scope.cancelled_caught

    cancelled = anyio.run(main, backend=backend)
    assert tracker.now == 0
    assert set(tracker.ended) == set(tracker.started)
    if result:
        check_outcomes(strategy, kinds, result[0], tracker)
    else:
        assert cancelled
