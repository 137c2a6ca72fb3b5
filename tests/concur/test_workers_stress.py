"""Randomized stress test of WorkerPool's queue, dispatch and shutdown machinery (issue 12).

Each example is a fresh event-loop run (``anyio.run``) of one random WorkerPool (workers,
queue_size, results_size, shutdown_timeout) fed by a random sequence of operations: waiting
and non-waiting submits of async, sync, failing, coroutine and gated (fake slow) jobs,
cancellations of jobs and of waiting submitters, gates opened, results read, ``close()``,
then a random exit (normal, with an exception from the body, or cancelled from outside).
After every operation and at the end: never more than ``workers`` job bodies running nor
more than ``queue_size`` jobs queued, no free worker while a job waits, every job in a final
status once the block is left, no job body running or starting after ``__aexit__``, the
statistics equal to the jobs' statuses, every outcome of a finished job read from
``results()`` exactly once, the body's exception bare, and no warning (a coroutine object
never started is closed).

Profiles (``CONCUR_STRESS``): ``ci`` (the default, a few seconds), ``large``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import threading
import warnings
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from stress_helpers import gc_young_only  # noqa: F401  # a fixture, used by name

import concur

# When a test fails, hypothesis's pytest plugin imports libcst to suggest a patch, and that
# import warns (mypy_extensions.TypedDict); under this suite's warnings-as-errors the
# report then ends in an INTERNALERROR that hides the falsifying example. Import it now.
with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401

SCENARIO_SECONDS = 10.0  # a scenario that takes longer has hung
FINAL = {concur.JobStatus.DONE, concur.JobStatus.FAILED, concur.JobStatus.CANCELLED}
KINDS = ("async", "sync", "fail", "coro", "gate", "sync_gate")
OPS = (
    "submit",
    "submit_nowait",
    "cancel",
    "open",
    "read",
    "checkpoint",
    "settle",
    "cancel_submit",
    "every",
    "when",
    "stop_trigger",
)

_COMMON: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "print_blob": False,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "phases": [Phase.explicit, Phase.generate, Phase.shrink],
}
_EXAMPLES = {"ci": 150, "large": 3000}
for _name, _count in _EXAMPLES.items():
    settings.register_profile(f"concur-workers-stress-{_name}", max_examples=_count, **_COMMON)
_PROFILE = os.environ.get("CONCUR_STRESS", "ci").removesuffix("-fallback")
PROFILE = _PROFILE if _PROFILE in _EXAMPLES else "ci"
#: pytest-timeout's backstop: room for hypothesis to shrink a failure; none for "large"
BACKSTOP = 600 if PROFILE == "ci" else 0


@dataclasses.dataclass(frozen=True)
class Scenario:
    workers: int
    queue_size: int
    results_size: int
    shutdown_timeout: float
    ops: tuple[tuple[str, int], ...]
    close_first: bool
    exit: str  # "normal", "error", "outside"
    open_all: bool  # open every gate before leaving the block
    reader: bool  # a task reads results() while the block runs


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    ops = draw(
        st.lists(
            st.tuples(st.sampled_from(OPS), st.integers(0, 20)),
            max_size=25,
        )
    )
    timeout = draw(st.sampled_from([0.0, 0.005, 0.02, math.inf]))
    exit_ = draw(st.sampled_from(["normal", "normal", "error", "outside"]))
    results_size = draw(st.integers(0, 3))
    open_all = draw(st.booleans())
    reader = draw(st.booleans())
    if exit_ == "normal" and timeout == math.inf:
        open_all = True  # else a gated job would keep the exit waiting for ever
        reader = True  # else a full results buffer would
    return Scenario(
        workers=draw(st.integers(1, 3)),
        queue_size=draw(st.integers(0, 3)),
        results_size=results_size,
        shutdown_timeout=timeout,
        ops=tuple(ops),
        close_first=draw(st.booleans()),
        exit=exit_,
        open_all=open_all,
        reader=reader,
    )


class Problem(AssertionError):
    pass


class World:
    """Runs one scenario and checks the pool's promises."""

    def __init__(self, s: Scenario) -> None:
        self.s = s
        self.lock = threading.Lock()
        self.bodies = 0  # job bodies running now (async and sync)
        self.peak = 0
        self.exited = False
        self.late: list[int] = []  # job bodies that ran after __aexit__ returned
        self.gates: list[anyio.Event] = []
        self.thread_gates: list[threading.Event] = []
        self.jobs: list[concur.Job[Any]] = []
        self.outcomes: list[concur.Outcome[Any]] = []
        self.next_id = 0
        self.submitters: list[anyio.CancelScope] = []
        self.cancelled: set[int] = set()  # ids of the jobs the scenario cancelled
        self.triggers: list[concur.Trigger] = []
        self.trigger_runs: dict[int, int] = {}  # trigger id (< 0) -> its runs in flight
        self.overlaps: list[int] = []  # triggers seen running twice at once

    # --- job bodies ---

    def enter(self, ident: int) -> None:
        with self.lock:
            if self.exited:
                self.late.append(ident)
            self.bodies += 1
            self.peak = max(self.peak, self.bodies)

    def leave(self) -> None:
        with self.lock:
            self.bodies -= 1

    async def body(self, kind: str, ident: int, gate: int) -> int:
        self.enter(ident)
        try:
            await anyio.lowlevel.checkpoint()
            if kind == "fail":
                raise ValueError(ident)
            if kind == "gate":
                await self.gates[gate].wait()
            return ident
        finally:
            self.leave()

    async def trigger_body(self, kind: str, ident: int, gate: int) -> int:
        """A trigger's run: it must never overlap another run of its trigger."""
        with self.lock:
            self.trigger_runs[ident] = self.trigger_runs.get(ident, 0) + 1
            overlap = self.trigger_runs[ident] > 1
        try:
            if overlap:  # a job's exception would only fail the job: note it
                self.overlaps.append(ident)
            return await self.body(kind, ident, gate)
        finally:
            with self.lock:
                self.trigger_runs[ident] -= 1

    def sync_body(self, kind: str, ident: int, gate: int) -> int:
        self.enter(ident)
        try:
            if kind == "sync_gate":
                while not self.thread_gates[gate].wait(0.001):
                    concur.check_cancelled()
            return ident
        finally:
            self.leave()

    def job_args(self, kind: str) -> tuple[tuple[Any, ...], str]:
        """The arguments of submit() for a new job of *kind*, and its name (its id)."""
        ident = self.next_id
        self.next_id += 1
        gate = ident % 3
        if kind in ("sync", "sync_gate"):
            return (self.sync_body, kind, ident, gate), str(ident)
        if kind == "coro":
            return (self.body("async", ident, gate),), str(ident)
        return (self.body, kind, ident, gate), str(ident)

    # --- checks ---

    def check(self, pool: concur.WorkerPool) -> None:
        s = self.s
        stats = pool.statistics()
        if stats.queued > s.queue_size:
            raise Problem(f"{stats.queued} queued > queue_size {s.queue_size}")
        if stats.running > s.workers:
            raise Problem(f"{stats.running} running > workers {s.workers}")
        busy = pool._busy  # pyright: ignore[reportPrivateUsage]
        if busy < s.workers and stats.queued:
            raise Problem(f"a free worker ({busy}/{s.workers} busy) while {stats.queued} wait")
        queue, waiters = pool._queue, pool._waiters  # pyright: ignore[reportPrivateUsage]
        if waiters and (busy != s.workers or len(queue) != s.queue_size):
            raise Problem(f"{len(waiters)} submitters wait with room: {busy} busy, {len(queue)}")
        if pool._unsettled != len(queue) + busy:  # pyright: ignore[reportPrivateUsage]
            raise Problem("the count of unsettled jobs drifted")
        if self.peak > s.workers:
            raise Problem(f"{self.peak} job bodies ran at once > workers {s.workers}")

    # --- the run ---

    async def submit(self, pool: concur.WorkerPool, kind: str, scope: anyio.CancelScope) -> None:
        args, name = self.job_args(kind)
        with scope, contextlib.suppress(anyio.ClosedResourceError):
            self.jobs.append(await pool.submit(*args, name=name))

    async def read(self, pool: concur.WorkerPool, n: int | None) -> None:
        results = pool.results()
        count = 0
        async for outcome in results:
            self.outcomes.append(outcome)
            count += 1
            if n is not None and count >= n:
                return

    async def main(self) -> None:
        s = self.s
        for _ in range(3):
            self.gates.append(anyio.Event())
            self.thread_gates.append(threading.Event())
        pool = concur.WorkerPool(
            s.workers,
            queue_size=s.queue_size,
            results_size=s.results_size,
            shutdown_timeout=s.shutdown_timeout,
        )
        with anyio.CancelScope() as outside:
            async with anyio.create_task_group() as helpers:
                try:
                    await self.run_pool(pool, helpers, outside)
                finally:
                    helpers.cancel_scope.cancel()
        if s.exit == "outside" and not outside.cancelled_caught:
            raise Problem("the outside cancellation did not propagate")
        self.check_after(pool)
        for trigger in self.triggers:
            await trigger.wait()
        if self.overlaps:
            raise Problem(f"triggers {self.overlaps} overlapped themselves")
        if s.results_size:
            await self.read(pool, None)  # what is left after the block
            self.check_outcomes()

    async def run_pool(
        self, pool: concur.WorkerPool, helpers: anyio.abc.TaskGroup, outside: anyio.CancelScope
    ) -> None:
        s = self.s
        try:
            async with pool:
                if s.results_size and s.reader:
                    helpers.start_soon(self.read, pool, None)
                for op, n in s.ops:
                    await self.step(pool, helpers, op, n)
                    self.check(pool)
                if s.close_first:
                    pool.close()
                if s.open_all:
                    self.open_gates()
                if s.exit == "error":
                    raise KeyError("body")
                if s.exit == "outside":
                    outside.cancel()
                    await anyio.lowlevel.checkpoint()
        except KeyError as exc:
            if exc.args != ("body",) or type(exc) is not KeyError:
                raise Problem(f"the body's exception changed: {exc!r}") from exc
        except BaseExceptionGroup as group:
            raise Problem(f"the pool raised a group: {group!r}") from group
        finally:
            with self.lock:
                self.exited = True
                running = self.bodies
            if running:
                raise Problem(f"{running} job bodies still running after __aexit__")

    async def step(
        self, pool: concur.WorkerPool, helpers: anyio.abc.TaskGroup, op: str, n: int
    ) -> None:
        kind = KINDS[n % len(KINDS)]
        if op == "submit":
            scope = anyio.CancelScope()
            self.submitters.append(scope)
            helpers.start_soon(self.submit, pool, kind, scope)
        elif op == "submit_nowait":
            args, name = self.job_args(kind)
            with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
                self.jobs.append(pool.submit_nowait(*args, name=name))
        elif op == "cancel" and self.jobs:
            job = self.jobs[n % len(self.jobs)]
            self.cancelled.add(id(job))
            job.cancel()
        elif op == "cancel_submit" and self.submitters:
            self.submitters[n % len(self.submitters)].cancel()
        elif op == "open":
            self.gates[n % 3].set()
            self.thread_gates[n % 3].set()
        elif op == "read" and self.s.results_size and not self.s.reader:
            with anyio.move_on_after(0.002):
                await self.read(pool, 1 + n % 3)
        elif op in ("every", "when"):
            ident = -1 - len(self.triggers)  # a trigger's runs have negative ids
            body_kind = ("async", "fail", "gate")[n % 3]
            period = 0.001 * (1 + n % 3)
            with contextlib.suppress(anyio.ClosedResourceError):
                if op == "every":
                    trigger = pool.every(period, self.trigger_body, body_kind, ident, n % 3)
                else:
                    trigger = pool.when(
                        lambda: n % 2 == 0 or self.gates[0].is_set(),
                        self.trigger_body,
                        body_kind,
                        ident,
                        n % 3,
                        poll=period,
                        max_consecutive_failures=1 + n % 4,
                    )
                self.triggers.append(trigger)
        elif op == "stop_trigger" and self.triggers:
            self.triggers[n % len(self.triggers)].cancel()
        elif op == "settle":
            if all(trigger.stopped for trigger in self.triggers):
                await anyio.wait_all_tasks_blocked()
            else:  # a trigger's timer wakes it every few ms: tasks never all block
                await anyio.sleep(0.002)
        else:
            await anyio.lowlevel.checkpoint()

    def open_gates(self) -> None:
        for gate in self.gates:
            gate.set()
        for thread_gate in self.thread_gates:
            thread_gate.set()

    def check_after(self, pool: concur.WorkerPool) -> None:
        if self.late:
            raise Problem(f"job bodies {self.late} started after the pool exited")
        for job in self.jobs:
            if job.status not in FINAL:
                raise Problem(f"{job!r} not finished after the pool exited")
        stats = pool.statistics()
        if (stats.running, stats.queued) != (0, 0):
            raise Problem(f"after exit: {stats}")
        statuses = [j.status for j in self.jobs]
        done = statuses.count(concur.JobStatus.DONE)
        failed = statuses.count(concur.JobStatus.FAILED)
        cancelled = statuses.count(concur.JobStatus.CANCELLED)
        # a job whose submit() was cancelled just as it was admitted is cancelled, unseen
        for trigger in self.triggers:
            if not trigger.stopped:
                raise Problem(f"{trigger!r} still running after the pool exited")
        if self.triggers:  # their runs are jobs too, not in self.jobs
            counts_ok = stats.completed >= done and stats.failed >= failed
        else:
            counts_ok = (stats.completed, stats.failed) == (done, failed)
        if not counts_ok or stats.cancelled < cancelled:
            raise Problem(f"{stats} but jobs: done {done}, failed {failed}, cancelled {cancelled}")
        s = self.s
        if s.exit == "normal" and s.shutdown_timeout == math.inf:
            # a graceful exit with every gate open finishes every job not cancelled by hand
            for job in self.jobs:
                if job.status is concur.JobStatus.CANCELLED and id(job) not in self.cancelled:
                    raise Problem(f"{job!r} cancelled by a graceful exit without a time bound")

    def check_outcomes(self) -> None:
        got = [o.value if isinstance(o, concur.Ok) else o.error.args[0] for o in self.outcomes]
        got = [ident for ident in got if ident >= 0]  # the triggers' runs repeat their ids
        if len(got) != len(set(got)):
            raise Problem(f"an outcome was delivered twice: {got}")
        expected = {
            int(job.name)
            for job in self.jobs
            if job.status in (concur.JobStatus.DONE, concur.JobStatus.FAILED)
        }
        if expected != set(got):
            raise Problem(f"outcomes: expected {sorted(expected)}, read {sorted(got)}")


@pytest.mark.timeout(BACKSTOP)
@pytest.mark.usefixtures("gc_young_only")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(settings.get_profile(f"concur-workers-stress-{PROFILE}"))
@given(scenario=scenarios())
def test_random_pools_keep_their_promises(backend: str, scenario: Scenario) -> None:
    """Random pools, jobs, cancellations and exits keep every promise of WorkerPool."""
    world = World(scenario)

    async def main() -> None:
        with anyio.fail_after(SCENARIO_SECONDS):
            await world.main()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        anyio.run(main, backend=backend)
        gc.collect()
    if caught:
        raise Problem(f"warnings: {[str(w.message) for w in caught]}")
