"""WorkerPool, Job, JobStatus, Trigger and WorkerPoolStatistics, on asyncio and trio."""

from __future__ import annotations

import contextvars
import gc
import inspect
import itertools
import logging
import math
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import concur

var: contextvars.ContextVar[str] = contextvars.ContextVar("test_workers_var", default="unset")


class Gate:
    """A fake slow job: it runs until the test opens the gate (async and sync twins)."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.opened = anyio.Event()
        self.thread_open = threading.Event()
        self.ran = 0

    async def run(self, value: object = None) -> object:
        self.ran += 1
        self.started.set()
        await self.opened.wait()
        return value

    def open(self) -> None:
        self.opened.set()
        self.thread_open.set()


async def double(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * x


def triple(x: int) -> int:
    return 3 * x


async def fail(message: str = "boom") -> None:
    await anyio.lowlevel.checkpoint()
    raise ValueError(message)


# --- submitting and awaiting -------------------------------------------------------------------


async def test_jobs_return_their_values_sync_async_and_coroutines() -> None:
    """Async functions, sync functions (in a thread) and coroutine objects all run; awaiting a
    job gives its value and its status is done."""
    loop_thread = threading.get_ident()
    async with concur.WorkerPool(3) as pool:
        a = await pool.submit(double, 2)
        b = await pool.submit(triple, 2)
        c = await pool.submit(double(5))
        d = await pool.submit(threading.get_ident)
        assert (await a, await b, await c) == (4, 6, 10)
        assert await d != loop_thread
    assert [j.status for j in (a, b, c, d)] == [concur.JobStatus.DONE] * 4
    assert a.name.endswith("double")
    assert c.name.endswith("double")


async def test_job_status_is_a_str_enum() -> None:
    """JobStatus values are the lower-case strings the issue names."""
    assert [s.value for s in concur.JobStatus] == [
        "queued",
        "running",
        "done",
        "failed",
        "cancelled",
    ]
    assert concur.JobStatus.DONE == "done"


async def test_a_failed_job_raises_its_own_exception_bare() -> None:
    """Awaiting a failed job raises the job's exception itself; other jobs are unaffected."""
    async with concur.WorkerPool(2) as pool:
        bad = await pool.submit(fail, "nope", name="bad")
        good = await pool.submit(double, 1)
        with pytest.raises(ValueError, match="nope"):
            await bad
        assert await good == 2
    assert bad.status is concur.JobStatus.FAILED
    assert bad.name == "bad"
    stats = pool.statistics()
    assert (stats.completed, stats.failed, stats.cancelled) == (1, 1, 0)


async def test_cancelling_a_queued_job() -> None:
    """A queued job cancelled never runs, ends cancelled, and awaiting it raises
    anyio.TaskCancelled."""
    gate = Gate()
    async with concur.WorkerPool(1) as pool:
        running = await pool.submit(gate.run)
        queued = await pool.submit(gate.run)
        await gate.started.wait()
        assert queued.status is concur.JobStatus.QUEUED
        queued.cancel()
        queued.cancel()  # idempotent
        assert queued.status is concur.JobStatus.CANCELLED
        with pytest.raises(anyio.TaskCancelled):
            await queued
        gate.open()
        await running
    assert gate.ran == 1
    assert pool.statistics().cancelled == 1


async def test_cancelling_a_running_job() -> None:
    """A running job cancelled ends cancelled at its next checkpoint."""
    gate = Gate()
    async with concur.WorkerPool(1) as pool:
        job = await pool.submit(gate.run)
        await gate.started.wait()
        assert job.status is concur.JobStatus.RUNNING
        job.cancel()
        with pytest.raises(anyio.TaskCancelled):
            await job
        assert job.status is concur.JobStatus.CANCELLED
        after = await pool.submit(double, 4)  # the worker is free again
        assert await after == 8
    job.cancel()  # no effect once finished
    assert job.status is concur.JobStatus.CANCELLED


async def test_a_queued_coroutine_cancelled_is_closed_without_a_warning() -> None:
    """A coroutine object that never starts is closed (warnings are errors here)."""
    gate = Gate()
    async with concur.WorkerPool(1) as pool:
        await pool.submit(gate.run)
        job = await pool.submit(double(1))
        job.cancel()
        gate.open()
    assert job.status is concur.JobStatus.CANCELLED


async def test_each_job_runs_in_a_copy_of_its_submit_context() -> None:
    """A context variable set before submit() is seen by the job; a later change is not, and
    what the job sets does not leak back."""

    async def read_and_set() -> str:
        seen = var.get()
        var.set("job")
        return seen

    def read_in_thread() -> str:
        return var.get()

    async with concur.WorkerPool(1) as pool:
        var.set("first")
        gate = Gate()
        blocker = await pool.submit(gate.run)
        a = await pool.submit(read_and_set)
        var.set("second")
        b = await pool.submit(read_in_thread)
        gate.open()
        await blocker
        assert await a == "first"
        assert await b == "second"
        assert var.get() == "second"


async def test_sync_jobs_run_under_the_pools_limiter_or_the_ambient_one() -> None:
    """Without an ambient limiter a sync job runs under a pool limiter of `workers` tokens;
    inside a scope that set one, under that one."""

    def limiter_in_thread() -> anyio.CapacityLimiter:
        return concur.current_settings().current_limiter()

    shared = anyio.CapacityLimiter(7)
    async with concur.WorkerPool(3) as pool:
        own = await (await pool.submit(limiter_in_thread))
        with concur.scope(limiter=shared):
            ambient = await (await pool.submit(limiter_in_thread))
    assert own.total_tokens == 3
    assert ambient is shared


async def test_the_pools_limiter_caps_threads_with_handoff() -> None:
    """At most `workers` sync jobs run in threads at once."""
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}
    release = threading.Event()
    started = threading.Semaphore(0)

    def work() -> None:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        started.release()
        release.wait(10)
        with lock:
            state["now"] -= 1

    async with concur.WorkerPool(2, queue_size=10) as pool:
        jobs = [await pool.submit(work) for _ in range(5)]
        for _ in range(2):
            await anyio.to_thread.run_sync(started.acquire)
        assert pool.statistics().running == 2
        assert pool.statistics().queued == 3
        release.set()
        for job in jobs:
            await job
    assert state["peak"] == 2


async def test_ambient_timeout_bounds_each_job() -> None:
    """A scope's per-call timeout bounds each job, which then fails with TimeoutError."""
    gate = Gate()
    async with concur.WorkerPool(1) as pool:
        with concur.scope(timeout=0.01):
            job = await pool.submit(gate.run)
        with pytest.raises(TimeoutError):
            await job
    assert job.status is concur.JobStatus.FAILED


# --- the queue: back-pressure and its exact size -----------------------------------------------


async def test_queue_size_is_exact() -> None:
    """workers=1, queue_size=1, one job running: one more is accepted, the next waits, and it
    is accepted as soon as the queue has room."""
    gate = Gate()
    async with concur.WorkerPool(1, queue_size=1) as pool:
        first = await pool.submit(gate.run, 1)
        second = pool.submit_nowait(gate.run, 2)
        assert second.status is concur.JobStatus.QUEUED
        with pytest.raises(anyio.WouldBlock):
            pool.submit_nowait(gate.run, 3)
        accepted: list[concur.Job[Any]] = []

        async def submit_third() -> None:
            accepted.append(await pool.submit(gate.run, 3))

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit_third)
            await anyio.wait_all_tasks_blocked()
            assert accepted == []  # back-pressure: submit() waits
            assert pool.statistics().queued == 1
            gate.open()
        assert [await j for j in (first, second, *accepted)] == [1, 2, 3]


async def test_queue_size_zero_hands_jobs_to_free_workers_only() -> None:
    """With queue_size=0 a job is accepted only when a worker is free for it."""
    gate = Gate()
    async with concur.WorkerPool(1, queue_size=0) as pool:
        job = pool.submit_nowait(gate.run)
        with pytest.raises(anyio.WouldBlock):
            pool.submit_nowait(gate.run)
        gate.open()
        await job
        assert (await pool.submit(double, 1)).status in (
            concur.JobStatus.RUNNING,
            concur.JobStatus.DONE,
        )


async def test_a_cancelled_waiting_submit_withdraws_its_job() -> None:
    """Cancelling a submit() that waits for room withdraws the job: it never runs, and its
    coroutine object is closed."""
    gate = Gate()
    async with concur.WorkerPool(1, queue_size=0) as pool:
        await pool.submit(gate.run)
        with anyio.move_on_after(0.01) as scope:
            await pool.submit(double(1))
        assert scope.cancelled_caught
        gate.open()
    assert pool.statistics().completed == 1


async def test_waiters_are_served_in_order_and_a_cancelled_queued_job_frees_a_place() -> None:
    """Submitters waiting for room get it first come, first served; a cancelled queued job
    gives its place to the next one."""
    gate = Gate()
    order: list[int] = []
    async with concur.WorkerPool(1, queue_size=1) as pool:
        await pool.submit(gate.run)
        queued = await pool.submit(gate.run)

        async def submit(i: int) -> None:
            await pool.submit(gate.run, i)
            order.append(i)

        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(submit, i)
                await anyio.wait_all_tasks_blocked()
            assert order == []
            queued.cancel()
            await anyio.wait_all_tasks_blocked()
            assert order == [0]
            gate.open()
    assert order == [0, 1, 2]


async def test_submit_refused_when_closed_or_not_entered() -> None:
    """submit() before entering is a RuntimeError, after close() ClosedResourceError, also for
    a submitter that was waiting; a coroutine object refused is closed."""
    pool = concur.WorkerPool(1, queue_size=0)
    with pytest.raises(RuntimeError, match="async with"):
        await pool.submit(double, 1)
    gate = Gate()
    async with pool:
        await pool.submit(gate.run)
        errors: list[BaseException] = []

        async def waiting_submit() -> None:
            try:
                await pool.submit(double(1))
            except anyio.ClosedResourceError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiting_submit)
            await anyio.wait_all_tasks_blocked()
            pool.close()
            pool.close()  # idempotent
        assert len(errors) == 1
        with pytest.raises(anyio.ClosedResourceError):
            await pool.submit(double(2))
        with pytest.raises(anyio.ClosedResourceError):
            pool.submit_nowait(double, 2)
        gate.open()
    with pytest.raises(anyio.ClosedResourceError):
        await pool.submit(double, 1)
    with pytest.raises(RuntimeError, match="already been entered"):
        async with pool:
            pass


# --- results ------------------------------------------------------------------------------------


async def test_results_come_in_completion_order_with_back_pressure() -> None:
    """results() yields Ok/Err in completion order; when its buffer is full the workers wait,
    and nothing is dropped."""
    gates = [Gate() for _ in range(4)]
    async with concur.WorkerPool(4, results_size=1) as pool:
        for i, gate in enumerate(gates):
            await pool.submit(gate.run, i)
        await pool.submit(fail, "x")
        for i in (2, 0, 3, 1):
            gates[i].open()
        await anyio.wait_all_tasks_blocked()
        # one outcome in the buffer; the other finished jobs hold their worker
        assert pool.statistics().running == 0
        assert pool.statistics().completed == 4
        pool.close()
        outcomes = [o async for o in pool.results()]
    values = [o.value for o in outcomes if isinstance(o, concur.Ok)]
    errors = [o for o in outcomes if isinstance(o, concur.Err)]
    assert sorted(values) == [0, 1, 2, 3]
    assert len(errors) == 1
    assert str(errors[0].error) == "x"
    assert pool.results() is pool.results()


async def test_results_order_is_completion_order() -> None:
    """With room in the buffer, outcomes come exactly in the order the jobs finished."""
    gates = [Gate() for _ in range(3)]
    async with concur.WorkerPool(3, results_size=10) as pool:
        for i, gate in enumerate(gates):
            await pool.submit(gate.run, i)
        for i in (2, 0, 1):
            gates[i].open()
            await anyio.wait_all_tasks_blocked()
    assert [o.unwrap() async for o in pool.results()] == [2, 0, 1]


async def test_results_back_pressure_blocks_workers() -> None:
    """A job whose outcome finds the buffer full keeps its worker, so the queued job waits."""
    async with concur.WorkerPool(1, results_size=1) as pool:
        await pool.submit(double, 1)
        await pool.submit(double, 2)
        third = await pool.submit(double, 3)
        await anyio.wait_all_tasks_blocked()
        assert pool.statistics().completed == 2  # the second waits to put its outcome
        assert third.status is concur.JobStatus.QUEUED
        results = pool.results()
        assert (await anext(results)).unwrap() == 2
        await anyio.wait_all_tasks_blocked()
        assert third.status is concur.JobStatus.DONE
        pool.close()
        assert [o.unwrap() async for o in results] == [4, 6]


async def test_results_refused_without_results_size() -> None:
    """results() is a RuntimeError when results_size=0."""
    async with concur.WorkerPool(1) as pool:
        with pytest.raises(RuntimeError, match="results_size"):
            pool.results()


# --- handlers and logging -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_on_result_and_on_error_are_called_and_their_errors_logged(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """on_result(job, value) and on_error(job, exc) are called after each job, sync or async;
    what they raise is logged on 'concur' and never propagated."""
    seen: list[tuple[str, object]] = []

    def record(job: concur.Job[Any], value: object) -> None:
        seen.append((job.name, value))
        if value == 0:
            raise RuntimeError("handler broke")

    async def arecord(job: concur.Job[Any], value: object) -> None:
        await anyio.lowlevel.checkpoint()
        record(job, value)

    handler = record if kind == "sync" else arecord
    caplog.set_level(logging.ERROR, logger="concur")
    async with concur.WorkerPool(1, on_result=handler, on_error=handler) as pool:
        await pool.submit(double, 1, name="one")
        await pool.submit(double, 0, name="zero")
        bad = await pool.submit(fail, "e", name="bad")
    assert [name for name, _ in seen] == ["one", "zero", "bad"]
    assert seen[0][1] == 2
    assert isinstance(seen[2][1], ValueError)
    assert bad.status is concur.JobStatus.FAILED
    messages = [r.getMessage() for r in caplog.records if r.name == "concur"]
    assert len(messages) == 1  # the handler's error; the failure was handled by on_error
    assert "on_result" in messages[0]


async def test_an_unretrieved_failure_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """A failure nobody awaits and no on_error handles is logged once at ERROR; an awaited
    one is not."""
    caplog.set_level(logging.ERROR, logger="concur")
    async with concur.WorkerPool(2) as pool:
        ignored = await pool.submit(fail, "ignored", name="ignored")
        awaited = await pool.submit(fail, "awaited", name="awaited")
        with pytest.raises(ValueError, match="awaited"):
            await awaited
    records = [r for r in caplog.records if r.name == "concur"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert "'ignored'" in records[0].getMessage()
    del ignored
    gc.collect()
    assert len([r for r in caplog.records if r.name == "concur"]) == 1


# --- shutdown -----------------------------------------------------------------------------------


async def test_graceful_exit_finishes_queued_and_running_jobs() -> None:
    """Leaving the block normally waits for the running and queued jobs to finish."""
    gate = Gate()
    async with anyio.create_task_group() as tg:
        async with concur.WorkerPool(1, shutdown_timeout=math.inf) as pool:
            running = await pool.submit(gate.run, "r")
            queued = await pool.submit(double, 5)

            async def open_when_exiting() -> None:
                await gate.started.wait()
                await anyio.wait_all_tasks_blocked()  # the pool's __aexit__ is waiting
                assert running.status is concur.JobStatus.RUNNING
                gate.open()

            tg.start_soon(open_when_exiting)
        assert running.status is concur.JobStatus.DONE
        assert queued.status is concur.JobStatus.DONE
    assert await queued == 10


async def test_exit_after_shutdown_timeout_cancels_what_is_left() -> None:
    """After shutdown_timeout a normal exit cancels the unfinished jobs and returns normally."""
    gate = Gate()
    before = anyio.current_time()
    async with concur.WorkerPool(1, shutdown_timeout=0.05) as pool:
        running = await pool.submit(gate.run)
        queued = await pool.submit(gate.run)
    assert anyio.current_time() - before >= 0.05
    assert running.status is concur.JobStatus.CANCELLED
    assert queued.status is concur.JobStatus.CANCELLED
    assert gate.ran == 1
    assert pool.statistics().cancelled == 2


async def test_exit_with_an_exception_cancels_everything_at_once() -> None:
    """An exception from the body cancels all jobs at once (no shutdown_timeout wait) and
    propagates unchanged."""
    gate = Gate()
    jobs: list[concur.Job[Any]] = []

    async def body() -> None:
        async with concur.WorkerPool(1, shutdown_timeout=math.inf) as pool:
            jobs.append(await pool.submit(gate.run))
            jobs.append(await pool.submit(gate.run))
            await gate.started.wait()
            raise KeyError("body")

    with pytest.raises(KeyError) as info:
        await body()
    assert type(info.value) is KeyError
    running, queued = jobs
    assert running.status is concur.JobStatus.CANCELLED
    assert queued.status is concur.JobStatus.CANCELLED


async def test_outside_cancellation_cancels_everything() -> None:
    """Cancelling the block from outside cancels the jobs, also during the graceful wait."""
    gate = Gate()
    with anyio.move_on_after(0.05):
        async with concur.WorkerPool(1, shutdown_timeout=math.inf) as pool:
            job = await pool.submit(gate.run)
    assert job.status is concur.JobStatus.CANCELLED


async def test_a_sync_job_delays_exit_until_its_thread_returns() -> None:
    """A cancelled sync job is never abandoned: the pool waits for its thread, which can stop
    early through check_cancelled()."""
    stopped = threading.Event()
    started = threading.Event()

    def cooperative() -> None:
        started.set()
        while True:
            try:
                concur.check_cancelled()
            except BaseException:
                stopped.set()
                raise
            threading.Event().wait(0.001)

    jobs: list[concur.Job[None]] = []

    async def body() -> None:
        async with concur.WorkerPool(1) as pool:
            jobs.append(await pool.submit(cooperative))
            await anyio.to_thread.run_sync(started.wait)
            raise KeyError

    with pytest.raises(KeyError):
        await body()
    assert stopped.is_set()
    assert jobs[0].status is concur.JobStatus.CANCELLED


# --- triggers -----------------------------------------------------------------------------------


async def test_every_runs_at_once_then_periodically_without_overlap() -> None:
    """every() runs at once, then every interval; ticks that come while its run is in
    flight are skipped."""
    gate = Gate()
    starts: list[float] = []

    async def tick() -> None:
        starts.append(anyio.current_time())
        if len(starts) == 1:
            await gate.opened.wait()

    async with concur.WorkerPool(4) as pool:
        before = anyio.current_time()
        trigger = pool.every(0.01, tick)
        while not starts:
            await anyio.sleep(0.001)
        await anyio.sleep(0.05)  # several ticks pass while the first run waits
        assert len(starts) == 1
        gate.open()
        while len(starts) < 4:
            await anyio.sleep(0.005)
        trigger.cancel()
        await trigger.wait()
    assert trigger.stopped
    assert trigger.reason == "cancelled"
    # Runs start on the grid before + k * interval, each on its own tick. The first run held
    # ticks 1 to 4 at least (0.05 s): they were skipped, not made up for, so run i >= 1 comes
    # at tick 4 + i or later (1 ms allowed for the timers' resolution).
    assert all(start - before >= (4 + i) * 0.01 - 0.001 for i, start in enumerate(starts) if i)


async def test_every_skips_the_ticks_missed_while_it_waited_for_room() -> None:
    """A trigger whose run waited for room in the queue does not make up the ticks it
    missed meanwhile."""
    gate = Gate()
    starts: list[float] = []

    async def tick() -> None:
        await anyio.lowlevel.checkpoint()
        starts.append(anyio.current_time())

    async with concur.WorkerPool(1, queue_size=0) as pool:
        await pool.submit(gate.run)  # the only worker is busy: the trigger's run waits
        before = anyio.current_time()
        trigger = pool.every(0.01, tick)
        await anyio.sleep(0.05)
        assert starts == []
        gate.open()
        while len(starts) < 3:
            await anyio.sleep(0.005)
        trigger.cancel()
    # the first run waited past tick 4; run i >= 1 comes at tick 5 + i or later
    assert starts[0] - before >= 0.05
    assert all(start - before >= (5 + i) * 0.01 - 0.001 for i, start in enumerate(starts) if i)


async def test_every_stops_after_consecutive_failures(caplog: pytest.LogCaptureFixture) -> None:
    """A trigger whose runs fail max_consecutive_failures times in a row stops and logs
    why."""
    caplog.set_level(logging.DEBUG, logger="concur")
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        raise OSError("down")

    async with concur.WorkerPool(2) as pool:
        trigger = pool.every(0.001, flaky, name="flaky", max_consecutive_failures=3)
        await trigger.wait()
        assert len(calls) == 3
        assert trigger.failures == 3
    assert trigger.reason is not None
    assert "3 failures in a row" in trigger.reason
    failures = [r for r in caplog.records if "a run failed" in r.getMessage()]
    assert len(failures) == 3  # each failed run logged, no on_error
    stops = [r for r in caplog.records if "stopped" in r.getMessage()]
    assert len(stops) == 1
    assert stops[0].levelno == logging.ERROR
    assert "OSError('down')" in stops[0].getMessage()
    assert pool.statistics().failed == 3


async def test_a_success_resets_the_failure_count() -> None:
    """Failures must be consecutive: a run that returns resets the count."""
    pattern = iter([1, 1, 0, 1, 1, 0, 1, 1, 1])

    async def sometimes() -> None:
        await anyio.lowlevel.checkpoint()
        if next(pattern):
            raise OSError

    async with concur.WorkerPool(1, on_error=lambda job, exc: None) as pool:
        trigger = pool.every(0.001, sometimes, max_consecutive_failures=3)
        await trigger.wait()
    assert list(pattern) == []


async def test_when_fires_while_the_predicate_is_true() -> None:
    """when() fires at every poll where the (sync or async) predicate is true, and never
    while its run is in flight."""
    level = {"on": False}
    runs: list[int] = []
    enough = anyio.Event()

    def predicate() -> bool:
        return level["on"]

    async def apredicate() -> bool:
        await anyio.lowlevel.checkpoint()
        return level["on"]

    async def run(i: int) -> None:
        await anyio.lowlevel.checkpoint()
        runs.append(i)
        if len(runs) >= 6:
            enough.set()

    async with concur.WorkerPool(4) as pool:
        a = pool.when(predicate, run, 0, poll=0.001)
        b = pool.when(apredicate, run, 1, poll=0.001)
        for _ in range(5):
            await anyio.sleep(0.002)
        assert runs == []
        level["on"] = True
        await enough.wait()
        a.cancel()
        b.cancel()
    assert set(runs) == {0, 1}


async def test_when_never_overlaps_its_run() -> None:
    """A when() trigger whose run waits does not fire again meanwhile."""
    gate = Gate()
    async with concur.WorkerPool(4) as pool:
        trigger = pool.when(lambda: True, gate.run, poll=0.001)
        await gate.started.wait()
        for _ in range(10):
            await anyio.sleep(0.002)
        assert gate.ran == 1
        trigger.cancel()
        gate.open()


async def test_a_raising_predicate_counts_as_a_failure() -> None:
    """A predicate that raises counts toward max_consecutive_failures."""

    def broken() -> bool:
        raise LookupError("pred")

    async with concur.WorkerPool(1) as pool:
        trigger = pool.when(broken, double, 1, poll=0.001, max_consecutive_failures=2)
        await trigger.wait()
    assert trigger.reason is not None
    assert "LookupError('pred')" in trigger.reason


async def test_triggers_run_in_their_context_and_stop_on_close() -> None:
    """A trigger's runs see the context of every(); close() stops the trigger."""
    seen: list[str] = []
    got = anyio.Event()

    async def look() -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(var.get())
        got.set()

    async with concur.WorkerPool(1) as pool:
        var.set("trigger")
        trigger = pool.every(10, look)
        var.set("later")
        await got.wait()
        pool.close()
        await trigger.wait()
        assert trigger.reason == "the pool closed"
        with pytest.raises(anyio.ClosedResourceError):
            pool.every(1, look)
    assert seen == ["trigger"]


async def test_leaving_the_block_stops_the_triggers() -> None:
    """Exiting stops every trigger."""
    async with concur.WorkerPool(1) as pool:
        trigger = pool.every(10, double, 1)
    assert trigger.stopped


# --- statistics and bad input -------------------------------------------------------------------


async def test_statistics_is_a_frozen_record() -> None:
    """statistics() gives workers, running, queued, completed, failed and cancelled."""
    gate = Gate()
    async with concur.WorkerPool(2, queue_size=5) as pool:
        assert pool.statistics() == concur.WorkerPoolStatistics(
            workers=2, running=0, queued=0, completed=0, failed=0, cancelled=0
        )
        await pool.submit(gate.run)
        await pool.submit(gate.run)
        queued = await pool.submit(gate.run)
        stats = pool.statistics()
        assert (stats.running, stats.queued) == (2, 1)
        with pytest.raises(AttributeError):
            stats.running = 5  # type: ignore[misc]
        queued.cancel()
        gate.open()
    assert pool.statistics() == concur.WorkerPoolStatistics(
        workers=2, running=0, queued=0, completed=2, failed=0, cancelled=1
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"workers": 0}, ValueError, "workers"),
        ({"workers": 1.5}, TypeError, "workers"),
        ({"workers": True}, TypeError, "workers"),
        ({"queue_size": -1}, ValueError, "queue_size"),
        ({"results_size": -1}, ValueError, "results_size"),
        ({"shutdown_timeout": -1}, ValueError, "shutdown_timeout"),
        ({"on_result": 3}, TypeError, "on_result"),
        ({"on_error": "x"}, TypeError, "on_error"),
    ],
)
def test_bad_pool_arguments(kwargs: dict[str, Any], error: type[Exception], name: str) -> None:
    """Bad arguments raise TypeError or ValueError naming the argument."""
    with pytest.raises(error, match=name):
        concur.WorkerPool(**kwargs)


async def test_bad_submit_and_trigger_arguments() -> None:
    """submit() and the triggers refuse bad input, naming the argument."""
    async with concur.WorkerPool(1) as pool:
        with pytest.raises(TypeError, match="callable"):
            await pool.submit(3)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="coroutine object and arguments"):
            await pool.submit(double(1), 2)  # type: ignore[call-overload]
        with pytest.raises(ValueError, match="interval"):
            pool.every(0, double, 1)
        with pytest.raises(ValueError, match="poll"):
            pool.when(lambda: True, double, 1, poll=-1)
        with pytest.raises(ValueError, match="max_consecutive_failures"):
            pool.every(1, double, 1, max_consecutive_failures=0)
        with pytest.raises(TypeError, match="predicate"):
            pool.when(5, double, 1)  # type: ignore[arg-type]


# --- the docs' example and the fatal exceptions -------------------------------------------------

DOCS = Path(__file__).parents[2] / "docs" / "services_workers.inc"


def _code_blocks(text: str) -> list[str]:
    blocks: list[str] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == ".. code-block:: python":
            body = [
                raw[4:]
                for raw in itertools.takewhile(
                    lambda raw: not raw or raw.startswith("    "), lines[i + 2 :]
                )
            ]
            blocks.append("\n".join(body))
    return blocks


async def test_the_docs_example_runs() -> None:
    """The example of docs/services_workers.inc runs as written (on each backend)."""
    (block,) = _code_blocks(DOCS.read_text())
    assert block.rstrip().endswith("anyio.run(main)")
    namespace: dict[str, Any] = {}
    exec(block.rstrip().removesuffix("anyio.run(main)"), namespace)
    await namespace["main"]()


async def test_a_job_raising_system_exit_ends_the_pool() -> None:
    """A job's SystemExit cancels the pool and is raised in a BaseExceptionGroup, as a
    TaskGroup raises it; the job ends failed."""
    gate = Gate()
    jobs: list[concur.Job[Any]] = []

    def leave() -> None:
        raise SystemExit(3)

    async def body() -> None:
        async with concur.WorkerPool(2) as pool:
            jobs.append(await pool.submit(gate.run))
            jobs.append(await pool.submit(leave))
            await anyio.sleep_forever()

    with pytest.RaisesGroup(SystemExit):
        await body()
    other, fatal = jobs
    assert fatal.status is concur.JobStatus.FAILED
    assert other.status is concur.JobStatus.CANCELLED


async def test_several_awaiters_of_one_job() -> None:
    """Several tasks may await one job; each gets its value, and cancelling one awaiter does
    not cancel the job."""
    gate = Gate()
    got: list[object] = []
    async with concur.WorkerPool(1) as pool:
        job = await pool.submit(gate.run, "v")

        async def waiter() -> None:
            got.append(await job)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            tg.start_soon(waiter)
            with anyio.move_on_after(0.001):
                await job
            gate.open()
    assert got == ["v", "v"]
    assert job.status is concur.JobStatus.DONE


async def test_results_before_entering_is_an_error() -> None:
    """results() needs an entered pool."""
    with pytest.raises(RuntimeError, match="async with"):
        concur.WorkerPool(1, results_size=1).results()


async def test_a_coroutine_given_to_a_cancelled_submit_is_closed() -> None:
    """A coroutine object whose submit() is cancelled before it is taken is closed."""
    coro = double(1)
    async with concur.WorkerPool(1) as pool:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await pool.submit(coro)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


async def test_a_sync_predicate_runs_in_a_thread() -> None:
    """A sync when() predicate runs through concur.call, in a worker thread."""
    loop_thread = threading.get_ident()
    threads: list[int] = []
    fired = anyio.Event()

    def predicate() -> bool:
        threads.append(threading.get_ident())
        return True

    async def fire() -> None:
        fired.set()

    async with concur.WorkerPool(1) as pool:
        trigger = pool.when(predicate, fire, poll=0.001)
        await fired.wait()
        trigger.cancel()
    assert threads
    assert loop_thread not in threads


async def test_a_garbage_collected_unretrieved_failure_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failed job dropped before anyone looked at it is logged when it is collected."""
    caplog.set_level(logging.ERROR, logger="concur")
    async with concur.WorkerPool(1) as pool:
        job = await pool.submit(fail, "dropped", name="dropped")
        await job.wait()
        del job
        gc.collect()
        messages = [r.getMessage() for r in caplog.records if r.name == "concur"]
        assert len(messages) == 1
        assert "'dropped'" in messages[0]
    assert len([r for r in caplog.records if r.name == "concur"]) == 1
