"""The randomized stress test's model: scenario trees, their strategy, and their checker.

A scenario is a tree of concur's combinators (``gather``, ``gather_settled``, ``race``,
``first_success``, ``map_async``, ``amap``, ``streams.merge``, ``TaskGroup``) over leaves,
under thread caps and outside cancellations. ``test_stress.py`` runs one; this module
draws them (:func:`scenarios`) and judges what came out (:class:`Checker`) from the tree
alone: a value is checked whatever happened (complete, in order where promised), an
exception against the error rule, and the outcome against what the tree makes certain.

Not a test module.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any, Final

import attrs
import pytest
import trio
from hypothesis import strategies as st

import concur

#: leaf kinds: "async" checkpoints, "event" waits on an event another task sets, "sync"
#: sleeps in a thread, "coop" polls check_cancelled() in a thread, "abandon" sleeps in a
#: thread it abandons when cancelled, "swallow" catches its cancellation and returns,
#: "fail" and "fail_sync" raise a Marker, "fatal" raises SystemExit
LEAVES = ("async", "event", "sync", "coop", "abandon", "swallow", "fail", "fail_sync", "fatal")
THREAD_LEAVES = ("sync", "coop", "fail_sync")
FAILING = ("fail", "fail_sync")
LEAF_MAX = {
    "async": 5,
    "event": 5,
    "sync": 3,
    "coop": 8,
    "abandon": 20,
    "swallow": 5,
    "fail": 5,
    "fail_sync": 3,
    "fatal": 5,
}
MAX_FAN_OUT = 4
MAX_CAP = 4
MAX_LEAVES = 24
MAX_DEPTH = 4

#: the cancellation exceptions of both backends: none may reach the top of a scenario
CANCELLED: Final = (asyncio.CancelledError, trio.Cancelled)

OK = "ok"
CUT = "cut"  # the value of an outside cancellation that was caught


class Marker(Exception):
    """The failure of one failing leaf."""

    def __init__(self, leaf: int) -> None:
        super().__init__(leaf)
        self.leaf = leaf


class Starved(Exception):
    """Thread calls spawned together did not all get a thread within the bound."""


# --- the tree ---------------------------------------------------------------------------------


class Node:
    """A node of a scenario tree: a plain description, identified by its object."""

    def children(self) -> tuple[Node, ...]:
        return ()


@attrs.frozen(eq=False)
class Leaf(Node):
    """A job of one of the ``LEAVES`` kinds."""

    kind: str
    n: int  # checkpoints, milliseconds or iterations


@attrs.frozen(eq=False)
class Wait(Node):
    """``gather``, ``gather_settled``, ``race`` or ``first_success`` of the jobs."""

    kind: str
    jobs: tuple[Node, ...]
    limit: int | None
    feed: str  # "coro", "callable" or "mixed"

    def children(self) -> tuple[Node, ...]:
        return self.jobs


@attrs.frozen(eq=False)
class Map(Node):
    """``map_async`` or ``amap`` of a function that runs the item's job."""

    kind: str
    jobs: tuple[Node, ...]
    limit: int
    ordered: bool
    stop: int | None  # amap: break after this many results (0: leave without reading)
    feed: str  # the input: "list", "gen" or "agen"
    sync: bool  # a sync function, run in threads by concur (the jobs are thread leaves)

    def children(self) -> tuple[Node, ...]:
        return self.jobs


@attrs.frozen(eq=False)
class Merge(Node):
    """``streams.merge`` of async generators, each yielding its jobs' values in order."""

    sources: tuple[tuple[Node, ...], ...]
    stop: int | None

    def children(self) -> tuple[Node, ...]:
        return tuple(job for source in self.sources for job in source)


@attrs.frozen(eq=False)
class Group(Node):
    """``concur.TaskGroup`` spawning the jobs (anyio's group semantics)."""

    jobs: tuple[Node, ...]
    thread_limit: int | None
    feed: str

    def children(self) -> tuple[Node, ...]:
        return self.jobs


@attrs.frozen(eq=False)
class Limit(Node):
    """A thread cap of *n* around the child: ``scope``, ``async with scope`` or a limiter."""

    kind: str  # "scope", "ascope" or "limiter"
    n: int
    child: Node

    def children(self) -> tuple[Node, ...]:
        return (self.child,)


@attrs.frozen(eq=False)
class Shared(Node):
    """One ``concur.scope(thread_limit=n)`` object entered by each job's task (a gather)."""

    n: int
    outside: bool  # made outside the event loop (a limiter per run), as at module level
    via_async: bool
    jobs: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.jobs


@attrs.frozen(eq=False)
class Cut(Node):
    """An outside cancellation: after *n* checkpoints, or ``move_on_after(n / 10 ms)``."""

    kind: str  # "checkpoints" or "timeout"
    n: int
    child: Node

    def children(self) -> tuple[Node, ...]:
        return (self.child,)


@attrs.frozen(eq=False)
class Meet(Node):
    """*k* thread calls spawned in one loop iteration that meet at a ``threading.Barrier``."""

    k: int
    n: int  # their own thread cap, >= k
    warm: bool  # one thread call first, so that the pool has an idle worker
    via: str  # the cap as "group" (TaskGroup(thread_limit=)) or "scope"


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children():
        yield from walk(child)


# --- a scenario and its plan ------------------------------------------------------------------


class Scenario:
    """A tree under a root thread cap, with the facts the runner and the checker need."""

    def __init__(self, root: Limit) -> None:
        self.root = root
        self.ids: dict[Node, int] = {node: i for i, node in enumerate(walk(root))}
        #: the node whose thread cap a thread leaf (or a Meet's threads) runs under
        self.cap_of: dict[Node, Node] = {}
        #: the cap of each node that sets one
        self.caps: dict[Node, int] = {}
        self.leaves: dict[Node, frozenset[int]] = {}
        self._plan(root, root)

    def _plan(self, node: Node, cap: Node) -> frozenset[int]:
        if isinstance(node, (Limit, Shared)):
            cap = node
            self.caps[node] = node.n
        elif isinstance(node, Group) and node.thread_limit is not None:
            cap = node
            self.caps[node] = node.thread_limit
        elif isinstance(node, Meet):
            cap = node
            self.caps[node] = node.n
        self.cap_of[node] = cap
        ids = frozenset({self.ids[node]}) if isinstance(node, Leaf) else frozenset()
        for child in node.children():
            ids |= self._plan(child, cap)
        self.leaves[node] = ids
        return ids

    def name(self, node: Node) -> str:
        i = self.ids[node]
        match node:
            case Leaf(kind, n):
                return f"{kind}#{i}({n})"
            case Meet(k, n, warm, via):
                return f"meet#{i}(k={k}, {via} cap={n}{', warm' if warm else ''})"
            case Wait(kind, jobs, limit, feed):
                opts = f"limit={limit}, " if limit is not None else ""
                return f"{kind}#{i}({opts}{feed})[{self._list(jobs)}]"
            case Map(kind, jobs, limit, ordered, stop, feed, sync):
                opts = f"limit={limit}, {'ordered' if ordered else 'unordered'}, {feed}"
                opts += ", sync fn" if sync else ""
                opts += f", break after {stop}" if stop is not None else ""
                return f"{kind}#{i}({opts})[{self._list(jobs)}]"
            case Merge(sources, stop):
                opts = f"(break after {stop})" if stop is not None else ""
                inner = ", ".join(f"<{self._list(source)}>" for source in sources)
                return f"merge#{i}{opts}[{inner}]"
            case Group(jobs, thread_limit, feed):
                opts = f"thread_limit={thread_limit}, " if thread_limit is not None else ""
                return f"TaskGroup#{i}({opts}{feed})[{self._list(jobs)}]"
            case Limit(kind, n, child):
                return f"{kind}#{i}({n})[{self.name(child)}]"
            case Shared(n, outside, via_async, jobs):
                where = "made outside the loop" if outside else "made in the loop"
                how = "async with" if via_async else "with"
                return f"shared_scope#{i}({n}, {where}, {how})[{self._list(jobs)}]"
            case Cut(kind, n, child):
                when = f"after {n} checkpoints" if kind == "checkpoints" else f"{n / 10} ms"
                return f"cancel#{i}({when})[{self.name(child)}]"
        raise AssertionError(node)  # pragma: no cover

    def _list(self, nodes: tuple[Node, ...]) -> str:
        return ", ".join(self.name(node) for node in nodes)

    def __repr__(self) -> str:
        return f"Scenario({self.name(self.root)})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


# --- the strategy -------------------------------------------------------------------------------


COMBINATORS = ("gather", "settled", "race", "first", "map", "amap", "merge", "group")
WRAPPERS = ("limit", "shared", "cut", "meet")


@st.composite
def scenarios(
    draw: st.DrawFn,
    max_leaves: int = MAX_LEAVES,
    depth: int = MAX_DEPTH,
    exclude: frozenset[str] = frozenset(),
) -> Scenario:
    """Random scenario trees of about *max_leaves* leaves at most, without *exclude* kinds.

    The root's child is always a combinator; below it, a node is a leaf one time in three
    (or once the depth or the leaf budget is spent). Shrinking goes towards leaves, the
    first kind of each list and small numbers.
    """
    kinds = tuple(k for k in COMBINATORS + WRAPPERS if k not in exclude)
    all_leaves = tuple(k for k in LEAVES if k not in exclude)
    budget = [max_leaves]
    ints = st.integers

    def leaf(kinds: tuple[str, ...]) -> Leaf:
        budget[0] -= 1
        kind = draw(st.sampled_from(kinds))
        return Leaf(kind, draw(ints(0, LEAF_MAX[kind])))

    def jobs(depth: int, grouped: bool) -> tuple[Node, ...]:
        return tuple(node(depth, grouped) for _ in range(draw(ints(1, MAX_FAN_OUT))))

    def node(depth: int, grouped: bool) -> Node:
        if depth == 0 or budget[0] <= 0 or not draw(st.sampled_from((False, True, True))):
            # SystemExit is raised bare by the helpers; a TaskGroup keeps anyio's semantics
            return leaf(tuple(k for k in all_leaves if k != "fatal") if grouped else all_leaves)
        return fan(depth - 1, grouped)

    def fan(depth: int, grouped: bool) -> Node:
        kind = draw(st.sampled_from(kinds))
        feed = draw(st.sampled_from(["coro", "callable", "mixed"]))
        match kind:
            case "gather" | "settled":
                limit = draw(st.none() | ints(1, 3))
                return Wait(kind, jobs(depth, grouped), limit, feed)
            case "race" | "first":
                return Wait(kind, jobs(depth, grouped), None, feed)
            case "map" | "amap":
                sync = draw(st.booleans())
                if sync:
                    items = tuple(leaf(THREAD_LEAVES) for _ in range(draw(ints(1, MAX_FAN_OUT))))
                else:
                    items = jobs(depth, grouped)
                stop = draw(st.none() | ints(0, len(items))) if kind == "amap" else None
                return Map(
                    kind,
                    items,
                    draw(ints(1, 3)),
                    draw(st.booleans()),
                    stop,
                    draw(st.sampled_from(["agen", "list", "gen"])),
                    sync,
                )
            case "merge":
                sources = tuple(
                    tuple(node(depth, grouped) for _ in range(draw(ints(0, 2))))
                    for _ in range(draw(ints(1, 3)))
                )
                total = sum(len(source) for source in sources)
                return Merge(sources, draw(st.none() | ints(0, total)))
            case "group":
                thread_limit = draw(st.none() | ints(1, MAX_CAP))
                return Group(jobs(depth, True), thread_limit, feed)
            case "limit":
                how = draw(st.sampled_from(["scope", "ascope", "limiter"]))
                return Limit(how, draw(ints(1, MAX_CAP)), node(depth, grouped))
            case "shared":
                outside, via_async = draw(st.booleans()), draw(st.booleans())
                return Shared(draw(ints(1, MAX_CAP)), outside, via_async, jobs(depth, grouped))
            case "cut":
                how = draw(st.sampled_from(["checkpoints", "timeout"]))
                most = 30 if how == "checkpoints" else 50
                return Cut(how, draw(ints(0, most)), node(depth, grouped))
            case _:
                k = draw(ints(2, MAX_CAP))
                budget[0] -= k
                n = draw(ints(k, MAX_CAP))
                return Meet(k, n, draw(st.booleans()), draw(st.sampled_from(["group", "scope"])))

    how = draw(st.sampled_from(["scope", "ascope", "limiter"]))
    cap = draw(ints(1, MAX_CAP))
    return Scenario(Limit(how, cap, fan(depth, False)))


# --- the checker ----------------------------------------------------------------------------


class Problem(AssertionError):
    """What the checker found wrong; each subclass is a separate bug to hypothesis."""


class WrongValue(Problem):
    """A returned value is incomplete, out of order or not the jobs' values."""


class StrayGroup(Problem):
    """An exception group where the error rule says bare, or of the wrong shape."""


class UnexpectedError(Problem):
    """An exception no leaf raised, or that the node promises never to raise."""


class PoolStarved(Problem):
    """Thread calls that the cap allows to run together did not."""


class WrongOutcome(Problem):
    """A tree that must succeed failed, or one that must fail returned."""


class FatalLost(Problem):
    """A SystemExit raised by a job did not reach the caller bare."""


class Leak(Problem):
    """Something outlived the scenario: a task, a thread, a token or an open input."""


class CapExceeded(Problem):
    """More threads ran user code at once under a cap than the cap allows."""


class Warned(Problem):
    """A warning, or an exception nobody could raise (``sys.unraisablehook``)."""


def describe(exc: BaseException) -> str:
    """``ExceptionGroup[Marker(3), Cancelled]``: an exception's shape, for messages."""
    if isinstance(exc, BaseExceptionGroup):
        inner = ", ".join(describe(e) for e in exc.exceptions)
        return f"{type(exc).__name__}[{inner}]"
    if isinstance(exc, Marker):
        return f"Marker({exc.leaf})"
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code})"
    return f"{type(exc).__name__}({exc})" if str(exc) else type(exc).__name__


def markers(exc: BaseException) -> frozenset[int]:
    """The leaves whose Marker is in *exc* (through groups)."""
    if isinstance(exc, BaseExceptionGroup):
        found: frozenset[int] = frozenset()
        for member in exc.exceptions:
            found |= markers(member)
        return found
    return frozenset({exc.leaf}) if isinstance(exc, Marker) else frozenset()


def flatten(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for member in exc.exceptions:
            yield from flatten(member)
    else:
        yield exc


def find_fatal(exc: BaseException) -> SystemExit | None:
    return next((e for e in flatten(exc) if isinstance(e, SystemExit)), None)


class Checker:
    """Judges a scenario's value or exception against its tree."""

    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario

    # --- what the tree makes certain (no outside cancellation inside a Cut decides it) ---

    def can_fail(self, node: Node) -> bool:
        match node:
            case Leaf(kind):
                return kind in FAILING or kind == "fatal"
            case Meet():
                return False
            case Wait("settled", jobs):
                return any(self.has_fatal(job) for job in jobs)
            case Wait("first", jobs):
                return all(self.can_fail(job) for job in jobs) or any(
                    self.has_fatal(job) for job in jobs
                )
        return any(self.can_fail(child) for child in node.children())

    def has_fatal(self, node: Node) -> bool:
        return any(isinstance(n, Leaf) and n.kind == "fatal" for n in walk(node))

    def must_fail(self, node: Node) -> bool:
        match node:
            case Leaf(kind):
                return kind in FAILING
            case Meet() | Cut() | Wait("settled"):
                return False
            case Wait("race" | "first", jobs):
                return all(self.must_fail(job) for job in jobs)
            case Map("amap", stop=stop) | Merge(stop=stop) if stop is not None:
                return False
        return any(self.must_fail(child) for child in node.children())

    # --- values ---

    def value(self, node: Node, value: object) -> None:
        """Raise a Problem unless *value* is what *node* may return."""
        s = self.s
        i = s.ids[node]
        if not (isinstance(value, tuple) and len(value) == 2 and value[0] == i):
            raise WrongValue(f"{s.name(node)} returned {value!r}, not its own value")
        payload = value[1]
        match node:
            case Leaf():
                self._expect(payload == OK, node, payload)
            case Meet(k):
                self._expect(payload == k, node, payload)
            case Wait("gather") | Shared() | Group() | Map("map", ordered=True):
                self._in_order(node, node.children(), payload)
            case Map("map"):
                self._any_order(node, node.children(), payload, len(node.children()))
            case Map("amap", jobs, ordered=ordered, stop=stop):
                want = len(jobs) if stop is None else min(stop, len(jobs))
                if ordered:
                    self._in_order(node, jobs[:want], payload)
                else:
                    self._any_order(node, jobs, payload, want)
            case Wait("settled", jobs):
                self._expect(isinstance(payload, list) and len(payload) == len(jobs), node, payload)
                for job, outcome in zip(jobs, payload, strict=True):
                    if isinstance(outcome, concur.Ok):
                        self.value(job, outcome.value)
                    elif isinstance(outcome, concur.Err):
                        self.error(job, outcome.error)
                    else:
                        raise WrongValue(f"{s.name(node)}: {outcome!r} is not an outcome")
            case Wait("race" | "first", jobs):
                self.value(self._job_by_id(node, jobs, payload), payload)
            case Merge(sources, stop):
                self._merged(node, sources, stop, payload)
            case Limit(child=child):
                self.value(child, payload)
            case Cut(child=child):
                if payload != CUT:
                    self.value(child, payload)

    def _expect(self, ok: bool, node: Node, payload: object) -> None:
        if not ok:
            raise WrongValue(f"{self.s.name(node)} returned {payload!r}")

    def _in_order(self, node: Node, jobs: tuple[Node, ...], payload: object) -> None:
        self._expect(isinstance(payload, list) and len(payload) == len(jobs), node, payload)
        assert isinstance(payload, list)
        for job, value in zip(jobs, payload, strict=True):
            self.value(job, value)

    def _any_order(self, node: Node, jobs: tuple[Node, ...], payload: object, n: int) -> None:
        self._expect(isinstance(payload, list) and len(payload) == n, node, payload)
        assert isinstance(payload, list)
        seen: set[int] = set()
        for value in payload:
            job = self._job_by_id(node, jobs, value)
            self._expect(self.s.ids[job] not in seen, node, payload)
            seen.add(self.s.ids[job])
            self.value(job, value)

    def _job_by_id(self, node: Node, jobs: tuple[Node, ...], value: object) -> Node:
        for job in jobs:
            if isinstance(value, tuple) and value and value[0] == self.s.ids[job]:
                return job
        raise WrongValue(f"{self.s.name(node)} returned {value!r}, the value of none of its jobs")

    def _merged(
        self, node: Node, sources: tuple[tuple[Node, ...], ...], stop: int | None, payload: object
    ) -> None:
        total = sum(len(source) for source in sources)
        want = total if stop is None else min(stop, total)
        self._expect(isinstance(payload, list) and len(payload) == want, node, payload)
        assert isinstance(payload, list)
        per_source: list[list[object]] = [[] for _ in sources]
        for item in payload:
            ok = isinstance(item, tuple) and len(item) == 2 and item[0] in range(len(sources))
            self._expect(ok, node, payload)
            per_source[item[0]].append(item[1])
        for source, got in zip(sources, per_source, strict=True):
            # each source's items arrive in its order: a prefix of its jobs' values
            self._in_order(node, source[: len(got)], got)

    # --- exceptions ---

    def error(self, node: Node, exc: BaseException) -> None:
        """Raise a Problem unless *exc* is an exception *node* may raise (no outside cancel)."""
        s = self.s
        if any(isinstance(e, Starved) for e in flatten(exc)):
            raise PoolStarved(f"{s.name(node)} raised {describe(exc)}: {exc!r}")
        match node:
            case Leaf(kind) if kind in FAILING:
                if type(exc) is Marker and exc.leaf == s.ids[node]:
                    return
                if isinstance(exc, BaseExceptionGroup) and markers(exc) == {s.ids[node]}:
                    raise StrayGroup(f"{describe(exc)} from {s.name(node)}, where bare")
                self._unexpected(node, exc)
            case Leaf() | Meet():
                self._unexpected(node, exc)
            case Wait("settled"):
                raise UnexpectedError(f"{s.name(node)} raised {describe(exc)}: {exc!r}")
            case Wait("race"):
                self._bare(node, node.children(), exc)
            case Wait("first", jobs):
                if not (type(exc) is ExceptionGroup and len(exc.exceptions) == len(jobs)):
                    raise StrayGroup(
                        f"{s.name(node)} raised {describe(exc)}; first_success fails only "
                        f"when every job failed, with a group of one failure per job"
                    )
                for job, member in zip(jobs, exc.exceptions, strict=True):
                    if self._owners(node, jobs, member) != [job]:
                        raise StrayGroup(
                            f"{s.name(node)} raised {describe(exc)}, not one failure per job "
                            f"in job order"
                        )
                    self.error(job, member)
            case Group():
                self._members(node, exc, 1)
            case Limit(child=child) | Cut(child=child):
                self.error(child, exc)
            case _:  # gather, map_async, amap, merge, the shared scope's gather
                owners = self._owners(node, node.children(), exc)
                if len(owners) == 1:
                    self.error(owners[0], exc)  # one job's failure, passed on bare
                else:
                    self._members(node, exc, 2)

    def _owners(self, node: Node, jobs: tuple[Node, ...], exc: BaseException) -> list[Node]:
        ids = markers(exc)
        owners = [job for job in jobs if ids & self.s.leaves[job]]
        if not owners:
            self._unexpected(node, exc)
        return owners

    def _bare(self, node: Node, jobs: tuple[Node, ...], exc: BaseException) -> None:
        owners = self._owners(node, jobs, exc)
        if len(owners) > 1:
            raise StrayGroup(f"{self.s.name(node)} raised {describe(exc)}, where bare")
        self.error(owners[0], exc)

    def _group(self, node: Node, exc: BaseException, least: int) -> None:
        where = self.s.name(node)
        if not isinstance(exc, BaseExceptionGroup):
            self._unexpected(node, exc)
        assert isinstance(exc, BaseExceptionGroup)
        if type(exc) is not ExceptionGroup:
            raise StrayGroup(f"{where} raised {describe(exc)}, which holds a BaseException")
        if len(exc.exceptions) < least:
            raise StrayGroup(f"{where} raised {describe(exc)}, a group of one where bare")

    def _members(self, node: Node, exc: BaseException, least: int) -> None:
        self._group(node, exc, least)
        assert isinstance(exc, BaseExceptionGroup)
        used: set[Node] = set()
        for member in exc.exceptions:
            owners = self._owners(node, node.children(), member)
            if len(owners) > 1 or owners[0] in used:
                raise StrayGroup(
                    f"{self.s.name(node)} raised {describe(exc)}: its members are not "
                    f"one failure per job"
                )
            used.add(owners[0])
            self.error(owners[0], member)

    def _unexpected(self, node: Node, exc: BaseException) -> None:
        raise UnexpectedError(
            f"{self.s.name(node)} raised {describe(exc)}: {exc!r}"
            + (" (a cancellation escaped)" if isinstance(exc, CANCELLED) else "")
        )


@pytest.fixture
def gc_young_only() -> Iterator[None]:
    """Freeze what the process holds, so each example's ``gc.collect()`` scans its own
    objects (used by the stress tests of test_stress.py and test_workers_stress.py)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
