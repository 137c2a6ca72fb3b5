"""Randomized stress test: random trees of concur's combinators keep every promise (issue 9).

Each example is a fresh event-loop run (``anyio.run``) of one random tree of ``gather``,
``gather_settled``, ``race``, ``first_success``, ``map_async``, ``amap`` (with early
``break``), ``streams.merge`` and ``TaskGroup`` over async, event-waiting, sync, cooperative,
abandoned, cancellation-swallowing, failing and ``SystemExit`` leaves, under random thread
caps and outside cancellations (see ``stress_helpers``). After each run, once abandoned
threads have ended: no leaf task or thread still running, every limiter at zero borrowed
tokens, no cap ever exceeded, every async-generator input closed, no warning, and the value
or exception is one the tree allows (complete and in order where promised; bare where the
error rule says bare).

Profiles (``CONCUR_STRESS``): ``ci`` (the default, about a minute for the whole file),
``large`` (many more scenarios). ``<profile>-fallback`` is what the fallback run uses: the
same test in a subprocess with the backend fast paths off (``-p nofast_plugin``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from stress_helpers import (
    CANCELLED,
    CUT,
    OK,
    THREAD_LEAVES,
    CapExceeded,
    Checker,
    Cut,
    FatalLost,
    Group,
    Leaf,
    Leak,
    Limit,
    Map,
    Marker,
    Meet,
    Merge,
    Node,
    Problem,
    Scenario,
    Shared,
    Starved,
    UnexpectedError,
    Wait,
    Warned,
    WrongOutcome,
    describe,
    find_fatal,
    gc_young_only,  # noqa: F401  # a fixture, used by name
    scenarios,
    walk,
)

import concur
import concur._core.calls as core_calls
from concur import streams

HERE = Path(__file__).parent

# When a test fails, hypothesis's pytest plugin imports libcst to suggest a patch, and that
# import warns (mypy_extensions.TypedDict); under this suite's warnings-as-errors the
# report then ends in an INTERNALERROR that hides the falsifying example. Import it now.
with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401

TICK = 0.001  # seconds: a leaf's unit of work in a thread
MEET_SECONDS = 1.0  # how long thread calls spawned together may take to meet
ABORT_GRACE = 0.25  # how long a party whose barrier broke looks for its caller's cancellation
SCENARIO_SECONDS = 10.0  # a scenario that takes longer has hung
SETTLE_SECONDS = 5.0  # how long abandoned threads may take to end after a scenario

_COMMON: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "print_blob": False,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "phases": [Phase.explicit, Phase.generate, Phase.shrink],
}
_EXAMPLES = {"ci": 500, "ci-fallback": 120, "large": 5000, "large-fallback": 1500}
for _name, _count in _EXAMPLES.items():
    settings.register_profile(f"concur-stress-{_name}", max_examples=_count, **_COMMON)

PROFILE = os.environ.get("CONCUR_STRESS", "ci")
if PROFILE not in _EXAMPLES:
    raise ValueError(f"CONCUR_STRESS must be one of {sorted(_EXAMPLES)}, got {PROFILE!r}")
#: pytest-timeout's backstop: room for hypothesis to shrink a failure (at most 5 minutes)
BACKSTOP = 600 if PROFILE.startswith("ci") else 0


# --- running a scenario -------------------------------------------------------------------------


@dataclasses.dataclass
class Report:
    """What one run left behind."""

    value: object = None
    error: BaseException | None = None
    tasks: int = 0  # leaf tasks still running when the tree returned
    threads: int = 0  # non-abandoned leaf threads still running when the tree returned
    open_inputs: frozenset[object] = frozenset()  # inputs started and not closed
    abandoned: int = 0  # abandoned threads still running after the settling wait
    borrowed: tuple[str, ...] = ()  # limiters with tokens still borrowed after it


class World:
    """Runs one scenario and keeps the counts its checks need."""

    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario
        self.lock = threading.Lock()
        self.running = dict.fromkeys(scenario.caps, 0)  # threads in user code, per cap
        self.peak = dict.fromkeys(scenario.caps, 0)
        self.threads = 0
        self.abandoned = 0
        self.tasks = 0
        self.opened: set[object] = set()
        self.closed: set[object] = set()
        self.limiters: dict[int, anyio.CapacityLimiter] = {}
        self.fired: list[int] = []  # the SystemExit leaves that raised
        # a shared scope made outside the event loop, as a module-level one is
        self.outside = {
            node: concur.scope(thread_limit=node.n)
            for node in walk(scenario.root)
            if isinstance(node, Shared) and node.outside
        }
        self._bg: anyio.abc.TaskGroup | None = None

    async def main(self) -> Report:
        async with anyio.create_task_group() as bg:
            self._bg = bg
            try:
                with anyio.fail_after(SCENARIO_SECONDS):
                    value = await self.ev(self.s.root)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # whatever the tree raised is checked
                report = Report(error=exc)
            else:
                report = Report(value=value)
            report.tasks, report.threads = self.tasks, self.threads
            report.open_inputs = frozenset(self.opened - self.closed)
            bg.cancel_scope.cancel()
        deadline = time.monotonic() + SETTLE_SECONDS
        while self.abandoned or self._borrowed():
            if time.monotonic() > deadline:
                break
            await anyio.sleep(TICK)
        report.abandoned = self.abandoned
        report.borrowed = self._borrowed()
        return report

    def _borrowed(self) -> tuple[str, ...]:
        return tuple(repr(lim) for lim in self.limiters.values() if lim.borrowed_tokens)

    def note_limiter(self) -> None:
        """Remember the limiter in force here, to check it is back to zero at the end."""
        limiter = concur.scope().settings.current_limiter()
        self.limiters[id(limiter)] = limiter

    # --- threads ---

    @contextlib.contextmanager
    def in_thread(self, node: Node, abandonable: bool = False) -> Iterator[None]:
        cap = self.s.cap_of[node]
        with self.lock:
            self.running[cap] += 1
            self.peak[cap] = max(self.peak[cap], self.running[cap])
            if abandonable:
                self.abandoned += 1
            else:
                self.threads += 1
        try:
            yield
        finally:
            with self.lock:
                self.running[cap] -= 1
                if abandonable:
                    self.abandoned -= 1
                else:
                    self.threads -= 1

    def work(self, leaf: Leaf, abandonable: bool = False) -> tuple[int, str]:
        """A thread leaf's body (in a worker thread)."""
        with self.in_thread(leaf, abandonable):
            if leaf.kind == "coop":
                for _ in range(leaf.n):
                    concur.check_cancelled()
                    time.sleep(TICK)
            else:
                time.sleep(leaf.n * TICK)
            if leaf.kind == "fail_sync":
                raise Marker(self.s.ids[leaf])
        return (self.s.ids[leaf], OK)

    def thread_fn(self, leaf: Leaf, abandonable: bool = False) -> Callable[[], tuple[int, str]]:
        def fn() -> tuple[int, str]:  # no arguments: nothing for the handoff policy to judge
            return self.work(leaf, abandonable)

        return fn

    # --- the tree ---

    async def ev(self, node: Node) -> Any:
        """Run *node*; its value is ``(its id, payload)``."""
        i = self.s.ids[node]
        match node:
            case Leaf():
                return await self.leaf(node)
            case Wait():
                payload = await self.wait(node)
            case Map():
                payload = await self.map(node)
            case Merge():
                payload = await self.merge(node)
            case Group():
                payload = await self.group(node)
            case Limit():
                payload = await self.limit(node)
            case Shared():
                payload = await self.shared(node)
            case Cut():
                payload = await self.cut(node)
            case Meet():
                payload = await self.meet(node)
        return (i, payload)

    async def leaf(self, leaf: Leaf) -> tuple[int, str]:
        i = self.s.ids[leaf]
        if leaf.kind in THREAD_LEAVES:
            return await concur.call(self.thread_fn(leaf))
        if leaf.kind == "abandon":
            fn = self.thread_fn(leaf, abandonable=True)
            return await concur.to_thread(fn, abandon_on_cancel=True)
        self.tasks += 1
        try:
            if leaf.kind == "event":
                event = anyio.Event()
                self.bg.start_soon(_set_after, event, leaf.n)
                await event.wait()
            elif leaf.kind == "swallow":
                try:
                    await _checkpoints(leaf.n + 1)
                except anyio.get_cancelled_exc_class():
                    # user code that swallows its cancellation (against concur's own rule):
                    # a short shielded clean-up, then it returns as if never cancelled
                    with anyio.CancelScope(shield=True):
                        await anyio.sleep(TICK)
                    return (i, OK)
            else:
                await _checkpoints(leaf.n)
            if leaf.kind == "fail":
                raise Marker(i)
            if leaf.kind == "fatal":
                self.fired.append(i)
                raise SystemExit(i)
            return (i, OK)
        finally:
            self.tasks -= 1

    @property
    def bg(self) -> anyio.abc.TaskGroup:
        assert self._bg is not None
        return self._bg

    def job(self, child: Node, k: int, feed: str) -> Any:
        """*child* as a job: a coroutine object, an async callable or a sync leaf's function."""
        style = feed if feed != "mixed" else ("coro", "callable")[k % 2]
        if style == "coro":
            return self.ev(child)
        if isinstance(child, Leaf) and child.kind in THREAD_LEAVES:
            return self.thread_fn(child)  # concur runs it in a thread
        return functools.partial(self.ev, child)

    async def wait(self, node: Wait) -> Any:
        jobs = [self.job(child, k, node.feed) for k, child in enumerate(node.jobs)]
        match node.kind:
            case "gather":
                return await concur.gather(*jobs, limit=node.limit)
            case "settled":
                return await concur.gather_settled(*jobs, limit=node.limit)
            case "race":
                return await concur.race(*jobs)
            case _:
                return await concur.first_success(*jobs)

    async def map(self, node: Map) -> Any:
        jobs = node.jobs
        fn: Callable[[int], Any]
        if node.sync:

            def fn(k: int) -> Any:
                leaf = jobs[k]
                assert isinstance(leaf, Leaf)
                return self.work(leaf)
        else:

            async def fn(k: int) -> Any:
                return await self.ev(jobs[k])

        key = self.s.ids[node]
        items: Any = (
            list(range(len(jobs)))
            if node.feed == "list"
            else self._gen(key, len(jobs))
            if node.feed == "gen"
            else self._agen(key, len(jobs))
        )
        if node.kind == "map":
            return await concur.map_async(fn, items, limit=node.limit, ordered=node.ordered)
        got: list[Any] = []
        async with concur.amap(fn, items, limit=node.limit, ordered=node.ordered) as results:
            if node.stop != 0:
                async for result in results:
                    got.append(result)
                    if len(got) == node.stop:
                        break
        return got

    def _gen(self, key: object, n: int) -> Iterator[int]:
        self.opened.add(key)
        try:
            yield from range(n)
        finally:
            self.closed.add(key)

    async def _agen(self, key: object, n: int) -> AsyncIterator[int]:
        self.opened.add(key)
        try:
            for k in range(n):
                if k % 2:
                    await anyio.sleep(0)
                yield k
        finally:
            self.closed.add(key)

    async def _source(self, key: object, j: int, jobs: tuple[Node, ...]) -> AsyncIterator[Any]:
        self.opened.add(key)
        try:
            for job in jobs:
                yield (j, await self.ev(job))
        finally:
            self.closed.add(key)

    async def merge(self, node: Merge) -> list[Any]:
        i = self.s.ids[node]
        sources = [self._source((i, j), j, jobs) for j, jobs in enumerate(node.sources)]
        got: list[Any] = []
        async with streams.merge(*sources) as items:
            if node.stop != 0:
                async for item in items:
                    got.append(item)
                    if len(got) == node.stop:
                        break
        return got

    async def group(self, node: Group) -> list[Any]:
        handles: list[anyio.TaskHandle[Any]] = []
        async with concur.TaskGroup(thread_limit=node.thread_limit) as tg:
            self.note_limiter()
            for k, child in enumerate(node.jobs):
                handles.append(tg.spawn(self.job(child, k, node.feed)))
        if any(h.status is not anyio.TaskHandle.Status.FINISHED for h in handles):
            await anyio.lowlevel.checkpoint_if_cancelled()
            raise UnexpectedError("TaskGroup exited normally with a task that did not finish")
        return [h.return_value for h in handles]

    async def limit(self, node: Limit) -> Any:
        match node.kind:
            case "scope":
                with concur.scope(thread_limit=node.n):
                    self.note_limiter()
                    return await self.ev(node.child)
            case "ascope":
                async with concur.scope(thread_limit=node.n):
                    self.note_limiter()
                    return await self.ev(node.child)
            case _:
                with concur.scope(limiter=anyio.CapacityLimiter(node.n)):
                    self.note_limiter()
                    return await self.ev(node.child)

    async def shared(self, node: Shared) -> Any:
        shared = self.outside[node] if node.outside else concur.scope(thread_limit=node.n)

        async def entered(child: Node) -> Any:
            if node.via_async:
                async with shared:
                    self.note_limiter()
                    return await self.ev(child)
            with shared:
                self.note_limiter()
                return await self.ev(child)

        return await concur.gather(*[entered(child) for child in node.jobs])

    async def cut(self, node: Cut) -> Any:
        value: Any = CUT
        if node.kind == "checkpoints":
            with anyio.CancelScope() as scope:
                self.bg.start_soon(_cancel_after, scope, node.n)
                value = await self.ev(node.child)
        else:
            with anyio.move_on_after(node.n * TICK / 10):
                value = await self.ev(node.child)
        return value

    async def meet(self, node: Meet) -> int:
        """k thread calls spawned in one loop iteration, which must all run at once."""
        barrier = threading.Barrier(node.k)

        def party() -> str:
            with self.in_thread(node):
                try:
                    barrier.wait(MEET_SECONDS)
                except threading.BrokenBarrierError:
                    # aborted because the caller was cancelled, or timed out: tell which
                    deadline = time.monotonic() + ABORT_GRACE
                    while time.monotonic() < deadline:
                        concur.check_cancelled()
                        time.sleep(TICK)
                    raise Starved(
                        f"{node.k} thread calls spawned together under a cap of {node.n} "
                        f"did not all run within {MEET_SECONDS} s"
                    ) from None
            return "met"

        def warm_up() -> None:
            with self.in_thread(node):
                pass

        cap = concur.scope(thread_limit=node.n) if node.via == "scope" else contextlib.nullcontext()
        thread_limit = node.n if node.via == "group" else None
        with cap:
            async with concur.TaskGroup(thread_limit=thread_limit) as tg:
                self.note_limiter()
                if node.warm:
                    await concur.to_thread(warm_up)  # leaves an idle worker in the pool
                handles = [tg.spawn(party) for _ in range(node.k)]
                try:
                    for handle in handles:
                        await handle.wait()
                except anyio.get_cancelled_exc_class():
                    barrier.abort()  # the parties that did start stop waiting for the others
                    raise
        assert all(h.return_value == "met" for h in handles)
        return node.k


async def _checkpoints(n: int) -> None:
    for _ in range(n):
        await anyio.sleep(0)


async def _set_after(event: anyio.Event, n: int) -> None:
    await _checkpoints(n)
    event.set()


async def _cancel_after(scope: anyio.CancelScope, n: int) -> None:
    await _checkpoints(n)
    scope.cancel()


# --- judging a run --------------------------------------------------------------------------------


def run_scenario(scenario: Scenario, backend: str) -> None:
    """Run *scenario* on *backend* and raise a Problem for anything it got wrong."""
    unraisable: list[str] = []

    def hook(u: Any) -> None:
        unraisable.append(f"{u.exc_type.__name__}: {u.exc_value!r} in {u.object!r}")

    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        old_hook, sys.unraisablehook = sys.unraisablehook, hook
        try:
            problem = _judge(scenario, backend)
            gc.collect()  # the run's objects are gone: a coroutine never awaited warns now
        finally:
            sys.unraisablehook = old_hook
    if problem is not None:
        raise problem
    if warned:
        raise Warned(f"warnings: {[str(w.message) for w in warned]}")
    if unraisable:
        raise Warned(f"unraisable exceptions: {unraisable}")


def _judge(scenario: Scenario, backend: str) -> Problem | None:
    """Run *scenario* and return what it got wrong, keeping none of the run's frames."""
    world = World(scenario)
    try:
        report = anyio.run(world.main, backend=backend)
    except SystemExit as exc:
        return FatalLost(f"SystemExit({exc.code}) escaped the event loop")
    try:
        _check(scenario, world, report)
    except Problem as problem:
        return problem.with_traceback(None)
    return None


def _check(scenario: Scenario, world: World, report: Report) -> None:
    over = {scenario.name(cap): (world.peak[cap], n) for cap, n in scenario.caps.items()}
    over = {name: peak_n for name, peak_n in over.items() if peak_n[0] > peak_n[1]}
    if over:
        raise CapExceeded(f"threads at once, cap: {over}")
    if report.tasks or report.threads:
        raise Leak(f"{report.tasks} leaf tasks and {report.threads} threads outlived the tree")
    if report.open_inputs:
        raise Leak(f"inputs started and never closed: {sorted(map(str, report.open_inputs))}")
    if report.abandoned:
        raise Leak(f"{report.abandoned} abandoned threads still running after {SETTLE_SECONDS} s")
    if report.borrowed:
        raise Leak(f"limiters with tokens still borrowed: {report.borrowed}")

    checker = Checker(scenario)
    root, error = scenario.root, report.error
    if world.fired:
        # a SystemExit raised by any job reaches the caller, bare, whatever else happened
        if not (type(error) is SystemExit and error.code in world.fired):
            got = "a value" if error is None else describe(error)
            raise FatalLost(f"SystemExit from leaves {world.fired}, but the tree gave {got}")
        return
    if error is not None:
        if find_fatal(error) is not None or isinstance(error, CANCELLED):
            raise UnexpectedError(f"the tree raised {describe(error)}")
        checker.error(root, error)
        if not checker.can_fail(root):
            raise WrongOutcome(f"no job can fail, but the tree raised {describe(error)}")
    else:
        checker.value(root, report.value)
        if checker.must_fail(root):
            raise WrongOutcome("a job that must fail failed, but the tree returned a value")


# --- the tests --------------------------------------------------------------------------------


def _scenario(node: Node) -> Scenario:
    return Scenario(Limit("scope", 2, node))


def _gather(*jobs: Node) -> Wait:
    return Wait("gather", jobs, None, "coro")


#: a gather whose sync job fails after its sibling was cancelled (a 3 ms thread)
_FAILS_WHILE_CANCELLED = _gather(Leaf("fail_sync", 3), Leaf("async", 5))

#: the same with two sync jobs failing after the cancellation: a group of two failures
_TWO_FAIL_WHILE_CANCELLED = _gather(Leaf("fail_sync", 3), Leaf("fail_sync", 3), Leaf("async", 5))

#: the shapes issue 9 reproduced, run first on every backend
ISSUE_9 = [
    # bug 1: 4 thread calls spawned in one loop iteration on a warm pool, cap 4, must meet
    _scenario(Meet(4, 4, True, "group")),
    # bug 3: a lone failure meeting an enclosing cancellation is raised bare...
    _scenario(Cut("checkpoints", 1, _FAILS_WHILE_CANCELLED)),
    # ... so first_success and race return their winner, and gather_settled raises nothing
    _scenario(Wait("first", (Leaf("async", 3), _FAILS_WHILE_CANCELLED), None, "coro")),
    _scenario(Wait("race", (Leaf("async", 3), _FAILS_WHILE_CANCELLED), None, "coro")),
    _scenario(Cut("checkpoints", 1, Wait("settled", (_FAILS_WHILE_CANCELLED,), None, "coro"))),
    # ... and first_success returns its winner when two jobs of a loser fail as it is cancelled
    _scenario(Wait("first", (Leaf("async", 3), _TWO_FAIL_WHILE_CANCELLED), None, "coro")),
    # bug 4: a job's SystemExit reaches the caller bare
    _scenario(Wait("race", (Leaf("fatal", 0),), None, "coro")),
    _scenario(_gather(Leaf("fatal", 0), Leaf("async", 1))),
    # bug 5: one scope object entered by several tasks
    _scenario(Shared(2, False, False, (Leaf("async", 1), Leaf("async", 1)))),
    _scenario(Shared(2, True, True, (Leaf("sync", 1), Leaf("async", 2)))),
]


def _issue_9_examples(test: Callable[..., None]) -> Callable[..., None]:
    for shape in ISSUE_9:
        test = example(scenario=shape)(test)
    return test


@pytest.mark.timeout(BACKSTOP)
@pytest.mark.usefixtures("gc_young_only")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(settings.get_profile(f"concur-stress-{PROFILE}"))
@_issue_9_examples
@given(scenario=scenarios())
def test_random_trees_keep_concurs_promises(backend: str, scenario: Scenario) -> None:
    """Random trees of combinators, jobs, caps and cancellations keep every promise."""
    if PROFILE.endswith("-fallback"):
        # the fallback run really is on anyio's path
        assert core_calls._fast_paths["asyncio"] is None  # pyright: ignore[reportPrivateUsage]
    run_scenario(scenario, backend)


@pytest.mark.timeout(BACKSTOP * 2)
def test_random_trees_keep_concurs_promises_on_anyios_thread_path() -> None:
    """The stress test also passes with the backend fast paths off (the fallback)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "CONCUR_STRESS": PROFILE.removesuffix("-fallback") + "-fallback",
    }
    test = f"{__file__}::{test_random_trees_keep_concurs_promises.__name__}"
    pytest_args = ["-q", "-p", "no:cacheprovider", "-p", "nofast_plugin", test]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *pytest_args],
        capture_output=True,
        text=True,
        env=env,
        cwd=HERE.parent.parent,
        timeout=BACKSTOP or None,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
