"""ThreadPool and ProcessPool (executors with their own caps), on asyncio and trio."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import anyio
import pytest
from pool_helpers import check_cancelled_result, fail, mark_and_sleep, pair, pid, square

import concur
from concur._pools import Executor

HERE = Path(__file__).parent

# --- ThreadPool ---------------------------------------------------------------------------------


async def test_thread_pool_runs_in_a_worker_thread() -> None:
    """run() returns what the function returned, computed in another thread."""
    async with concur.ThreadPool(2) as pool:
        assert await pool.run(threading.get_ident) != threading.get_ident()
        assert await pool.run(divmod, 7, 2) == (3, 1)
        assert pool.statistics() == concur.PoolStatistics(
            max_workers=2, running=0, completed=2, failed=0
        )


async def test_thread_pool_caps_its_calls() -> None:
    """At most max_workers calls run at once; the others wait; statistics show it."""
    lock = threading.Lock()
    gate = threading.Event()
    now = peak = 0

    def job(i: int) -> int:
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)
        gate.wait(10)
        with lock:
            now -= 1
        return i

    results: list[int] = []

    async def caller(i: int) -> None:
        results.append(await pool.run(job, i))

    async with concur.ThreadPool(2) as pool, anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(caller, i)
        while pool.statistics().running < 2:  # threads start on their own time
            await anyio.sleep(0.005)
        await anyio.wait_all_tasks_blocked()
        assert pool.statistics().running == 2
        gate.set()
    assert peak == 2
    assert sorted(results) == list(range(6))
    assert pool.statistics() == concur.PoolStatistics(2, 0, 6, 0)


async def test_thread_pool_counts_failures_and_raises_them_bare() -> None:
    """The function's exception propagates as it is and counts as failed."""
    async with concur.ThreadPool(1) as pool:
        with pytest.raises(ValueError, match="boom"):
            await pool.run(fail, "boom")
        assert await pool.run(square, 3) == 9
    assert pool.statistics() == concur.PoolStatistics(1, 0, 1, 1)


async def test_thread_pool_cancelled_call_waits_for_its_thread() -> None:
    """A cancelled call waits for its thread, which can stop through check_cancelled()."""
    started = threading.Event()
    stopped = threading.Event()

    def cooperative() -> None:
        started.set()
        try:
            while True:
                concur.check_cancelled()
                threading.Event().wait(0.005)
        finally:
            stopped.set()

    async with concur.ThreadPool(1) as pool:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.run, cooperative)
                await anyio.to_thread.run_sync(started.wait, 10)
                scope.cancel()
        assert scope.cancelled_caught
        assert stopped.is_set()  # the call returned only once the thread had stopped
        assert pool.statistics() == concur.PoolStatistics(1, 0, 0, 0)  # cancelled: neither


async def test_thread_pool_call_cancelled_while_waiting_never_runs() -> None:
    """A call cancelled while it waits for a free worker never runs."""
    gate = threading.Event()
    ran: list[str] = []
    async with concur.ThreadPool(1) as pool, anyio.create_task_group() as tg:
        tg.start_soon(pool.run, gate.wait, 10)
        while pool.statistics().running < 1:
            await anyio.sleep(0.005)
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as waiting:
                waiting.start_soon(pool.run, ran.append, "ran")
                await anyio.wait_all_tasks_blocked()
                scope.cancel()
        gate.set()
    assert ran == []
    assert pool.statistics() == concur.PoolStatistics(1, 0, 1, 0)


async def test_thread_pool_hands_arguments_off() -> None:
    """The ambient handoff policy applies to the arguments (strict refuses a list)."""
    async with concur.ThreadPool(1) as pool:
        with concur.scope(handoff="strict"), pytest.raises(concur.UnsafeHandoffError):
            await pool.run(len, [1, 2])


async def test_thread_pool_exit_waits_for_calls_of_outside_tasks() -> None:
    """Leaving the block waits for a call still running in a task outside it."""
    gate = threading.Event()
    exited = anyio.Event()
    pool = concur.ThreadPool(1)

    async def leave() -> None:
        await pool.__aexit__(None, None, None)
        exited.set()

    async with anyio.create_task_group() as tg:
        await pool.__aenter__()
        tg.start_soon(pool.run, gate.wait, 10)
        while pool.statistics().running < 1:
            await anyio.sleep(0.005)
        tg.start_soon(leave)
        await anyio.wait_all_tasks_blocked()
        assert not exited.is_set()
        with pytest.raises(anyio.ClosedResourceError):
            await pool.run(square, 2)  # closed to new calls at once
        gate.set()
        await exited.wait()
    assert pool.statistics().completed == 1


async def test_thread_pool_refuses_bad_input_and_misuse() -> None:
    """Bad max_workers, async or non-callable fn, use outside the block: clear errors."""
    with pytest.raises(ValueError, match="max_workers"):
        concur.ThreadPool(0)
    with pytest.raises(TypeError, match="max_workers"):
        concur.ThreadPool(True)
    pool = concur.ThreadPool(1)
    with pytest.raises(RuntimeError, match="async with"):
        await pool.run(square, 2)

    async def coro_fn() -> None:
        pass

    async with pool:
        with pytest.raises(TypeError, match="async function"):
            await pool.run(coro_fn)  # type: ignore[unused-coroutine]
        with pytest.raises(TypeError, match="coroutine object"):
            await pool.run(coro_fn())  # type: ignore[arg-type]  # closed: no warning
        with pytest.raises(TypeError, match="callable"):
            await pool.run(3)  # type: ignore[arg-type]
    with pytest.raises(anyio.ClosedResourceError):
        await pool.run(square, 2)
    with pytest.raises(RuntimeError, match="reopen"):
        async with pool:
            pass


def test_pools_are_executors() -> None:
    """Both pools have the Executor shape (one method: async run(fn, /, *args))."""
    executors: list[Executor] = [concur.ThreadPool(1), concur.ProcessPool(1)]
    assert all(callable(e.run) for e in executors)


# --- ProcessPool --------------------------------------------------------------------------------


async def test_process_pool_runs_in_a_worker_process() -> None:
    """run() returns the result computed in another process; failures come back bare."""
    async with concur.ProcessPool(1) as pool:
        assert await pool.run(pid) != os.getpid()
        assert await pool.run(square, 12) == 144
        with pytest.raises(ValueError, match="in a process"):
            await pool.run(fail, "in a process")
    assert pool.statistics() == concur.PoolStatistics(1, 0, 2, 1)


async def test_process_pool_refuses_what_cannot_be_pickled_before_sending() -> None:
    """An unpicklable fn or argument raises TypeError naming it, before any await."""
    async with concur.ProcessPool(1) as pool:
        with anyio.CancelScope() as scope:
            scope.cancel()  # the refusal comes before the first checkpoint
            with pytest.raises(TypeError, match=r"fn \(function .*lambda.*top level"):
                await pool.run(lambda: 1)
            with pytest.raises(TypeError, match=r"argument 1 \(lock"):
                await pool.run(pair, 1, threading.Lock())
            with pytest.raises(TypeError, match="async function"):
                await pool.run(anyio.sleep, 1)  # type: ignore[unused-coroutine]
        assert pool.statistics() == concur.PoolStatistics(1, 0, 0, 0)


async def test_process_pool_caps_its_calls(tmp_path: Path) -> None:
    """At most max_workers calls run at once in worker processes."""
    markers = [str(tmp_path / f"call{i}") for i in range(3)]
    async with concur.ProcessPool(2) as pool, anyio.create_task_group() as tg:
        for marker in markers:
            tg.start_soon(pool.run, mark_and_sleep, marker, 0.3)
        while sum(Path(m + ".start").exists() for m in markers) < 2:
            await anyio.sleep(0.01)
        assert pool.statistics().running == 2
        started = [m for m in markers if Path(m + ".start").exists()]
        assert not any(Path(m + ".end").exists() for m in started)
        assert sum(Path(m + ".start").exists() for m in markers) == 2  # the third waits
    assert all(Path(m + ".end").exists() for m in markers)
    assert pool.statistics() == concur.PoolStatistics(2, 0, 3, 0)


async def _cancel_while_running(pool: concur.ProcessPool, marker: str, seconds: float) -> int:
    """Start mark_and_sleep in *pool*, cancel it once it runs; return the worker's pid."""
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run, mark_and_sleep, marker, seconds)
            start = Path(marker + ".start")
            while not start.exists() or not start.read_text():
                await anyio.sleep(0.01)
            scope.cancel()
    assert scope.cancelled_caught
    return int(Path(marker + ".start").read_text())


def _alive(worker: int) -> bool:
    try:
        os.kill(worker, 0)
    except ProcessLookupError:
        return False
    return True


async def test_process_pool_kill_on_cancel_kills_the_worker(tmp_path: Path) -> None:
    """With kill_on_cancel=True a cancelled call kills its worker process."""
    marker = str(tmp_path / "call")
    async with concur.ProcessPool(1, kill_on_cancel=True) as pool:
        worker = await _cancel_while_running(pool, marker, 60)
        assert not _alive(worker)  # killed and reaped
        assert not Path(marker + ".end").exists()
        assert pool.statistics() == concur.PoolStatistics(1, 0, 0, 0)
        assert await pool.run(square, 5) == 25  # a new worker takes its place


async def test_process_pool_without_kill_waits_for_the_call(tmp_path: Path) -> None:
    """Without kill_on_cancel a cancelled call waits for its worker, then raises."""
    marker = str(tmp_path / "call")
    async with concur.ProcessPool(1) as pool:
        worker = await _cancel_while_running(pool, marker, 0.3)
        assert Path(marker + ".end").exists()  # the call ran to its end before we returned
        assert _alive(worker)  # kept for the next call
        assert pool.statistics() == concur.PoolStatistics(1, 0, 0, 0)


async def test_check_cancelled_in_a_worker_process_returns_none() -> None:
    """concur.check_cancelled() in a worker process returns None."""
    async with concur.ProcessPool(1) as pool:
        assert await pool.run(check_cancelled_result) is None


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_process_pool_says_the_main_guard_is_missing(tmp_path: Path, backend: str) -> None:
    """A script that starts a pool without the __main__ guard gets an error saying so."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            """
            import anyio
            import concur
            from pool_helpers import square

            async def main():
                async with concur.ProcessPool(1) as pool:
                    await pool.run(square, 2)

            anyio.run(main, backend={backend!r})
            """
        ).format(backend=backend)
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()
    assert any(
        line.startswith("RuntimeError: ProcessPool.run()") and '__name__ == "__main__"' in line
        for line in last
    ), result.stderr


def test_process_pool_refuses_bad_options() -> None:
    """max_workers < 1 and a non-bool kill_on_cancel are refused, naming the argument."""
    with pytest.raises(ValueError, match="max_workers"):
        concur.ProcessPool(0)
    with pytest.raises(TypeError, match="kill_on_cancel"):
        concur.ProcessPool(1, kill_on_cancel="yes")  # type: ignore[arg-type]


async def test_process_pool_keywords_travel_in_a_partial() -> None:
    """A functools.partial of a module-level function carries keyword arguments."""
    async with concur.ProcessPool(1) as pool:
        assert await pool.run(functools.partial(int, base=2), "101") == 5
