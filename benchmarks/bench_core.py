"""B1-B3, B5-B7: concur's core side by side with raw anyio, asyncio and trio.

Run one backend per process, as ``python -m benchmarks.bench_core --backend asyncio``
(``--quick`` for a short run). Rounds are interleaved (every variant once per round, in a
rotating order) so a noisy machine slows all variants alike; each figure is the median of
the rounds, with min and max beside it, and each ratio compares medians from this one run.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_process
import anyio.to_thread

import concur

Variant = Callable[[], Awaitable[float]]  # returns the seconds one sample took


async def interleave(variants: dict[str, Variant], rounds: int) -> dict[str, list[float]]:
    """Run every variant once per round, rotating the order; return the samples."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for variant in variants.values():  # warm-up: threads, caches, imports
        await variant()
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            samples[name].append(await variants[name]())
    return samples


def summary(samples: list[float], scale: float) -> dict[str, float]:
    return {
        "min": min(samples) * scale,
        "median": statistics.median(samples) * scale,
        "max": max(samples) * scale,
    }


# --- B1: a sync call through a thread ---------------------------------------------------------


def _trivial(frame: Any) -> int:
    return 1


def _blocking(frame: Any) -> int:
    time.sleep(0.005)  # a call that blocks 5 ms (I/O, a lock): 40 callers need 40 threads
    return 1


async def b1(backend: str, quick: bool) -> dict[str, Any]:
    import polars as pl

    frame = pl.DataFrame({f"c{i}": range(100) for i in range(10)})
    n_seq = 300 if quick else 2000
    n_conc = 40
    per_caller = 10 if quick else 50
    limiter = anyio.CapacityLimiter(40)
    pool = concurrent.futures.ThreadPoolExecutor(40)

    def seq(run_one: Callable[[], Awaitable[Any]]) -> Variant:
        async def sample() -> float:
            t0 = time.perf_counter()
            for _ in range(n_seq):
                await run_one()
            return (time.perf_counter() - t0) / n_seq

        return sample

    def conc(run_one: Callable[[], Awaitable[Any]], per_caller: int = per_caller) -> Variant:
        async def caller() -> None:
            for _ in range(per_caller):
                await run_one()

        async def sample() -> float:
            t0 = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(n_conc):
                    tg.start_soon(caller)
            return (time.perf_counter() - t0) / (n_conc * per_caller)

        return sample

    ops: dict[str, Callable[[], Awaitable[Any]]] = {
        "concur.to_thread": lambda: concur.to_thread(_trivial, frame, limiter=limiter),
        "concur.to_thread(abandon)": lambda: concur.to_thread(
            _trivial, frame, limiter=limiter, abandon_on_cancel=True
        ),
        "anyio.to_thread": lambda: anyio.to_thread.run_sync(_trivial, frame, limiter=limiter),
        "anyio.to_thread(abandon)": lambda: anyio.to_thread.run_sync(
            _trivial, frame, limiter=limiter, abandon_on_cancel=True
        ),
    }
    if backend == "asyncio":

        def executor() -> Awaitable[Any]:
            return asyncio.get_running_loop().run_in_executor(pool, _trivial, frame)

        ops["asyncio run_in_executor(40)"] = executor
        ops["asyncio.to_thread"] = lambda: asyncio.to_thread(_trivial, frame)
    else:
        import trio

        trio_limiter = trio.CapacityLimiter(40)
        ops["trio.to_thread"] = lambda: trio.to_thread.run_sync(
            _trivial, frame, limiter=trio_limiter
        )
    with concur.scope(handoff="warn"):
        variants = {f"seq {k}": seq(v) for k, v in ops.items()}
        variants |= {f"40 callers {k}": conc(v) for k, v in ops.items()}
        # the same 40 callers, each call blocking 5 ms: only 40 threads at once keep up
        blocking = {
            "concur.to_thread": lambda: concur.to_thread(_blocking, frame, limiter=limiter),
            "anyio.to_thread": lambda: anyio.to_thread.run_sync(_blocking, frame, limiter=limiter),
        }
        if backend == "asyncio":
            blocking["asyncio.to_thread"] = lambda: asyncio.to_thread(_blocking, frame)
        variants |= {
            f"40 callers 5ms {k}": conc(v, 4 if quick else 10) for k, v in blocking.items()
        }
        samples = await interleave(variants, rounds=3 if quick else 5)
    pool.shutdown()
    return {k: summary(v, 1e6) for k, v in samples.items()}


# --- B2: an async call -----------------------------------------------------------------------


async def _noop() -> int:
    return 1


async def b2(backend: str, quick: bool) -> dict[str, Any]:
    n = 20_000 if quick else 200_000

    async def direct() -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            await _noop()
        return (time.perf_counter() - t0) / n

    async def via_call() -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            await concur.call(_noop)
        return (time.perf_counter() - t0) / n

    samples = await interleave(
        {"direct await": direct, "concur.call": via_call}, rounds=3 if quick else 5
    )
    return {k: summary(v, 1e6) for k, v in samples.items()}


# --- B3: spawning tasks ----------------------------------------------------------------------


async def _task() -> None:
    pass


async def b3(backend: str, quick: bool) -> dict[str, Any]:
    n = 5_000 if quick else 20_000

    async def concur_spawn() -> float:
        t0 = time.perf_counter()
        async with concur.TaskGroup() as tg:
            for _ in range(n):
                tg.spawn(_task)
        return (time.perf_counter() - t0) / n

    async def anyio_start_soon() -> float:
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(_task)
        return (time.perf_counter() - t0) / n

    variants: dict[str, Variant] = {
        "concur TaskGroup.spawn": concur_spawn,
        "anyio start_soon": anyio_start_soon,
    }
    if backend == "asyncio":

        async def raw() -> float:
            t0 = time.perf_counter()
            async with asyncio.TaskGroup() as tg:
                for _ in range(n):
                    tg.create_task(_task())
            return (time.perf_counter() - t0) / n

        variants["asyncio.TaskGroup"] = raw
    else:
        import trio

        async def raw() -> float:
            t0 = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for _ in range(n):
                    nursery.start_soon(_task)
            return (time.perf_counter() - t0) / n

        variants["trio nursery"] = raw
    samples = await interleave(variants, rounds=3 if quick else 5)
    return {k: summary(v, 1e6) for k, v in samples.items()}


# --- B5: parallel speedup: GIL-releasing jobs on threads, GIL-holding jobs on processes -----


def _gil_releasing_jobs(quick: bool) -> list[Callable[[], object]]:
    import duckdb
    import numpy as np
    import polars as pl

    size = 1_000_000 if quick else 4_000_000
    rng = np.random.default_rng(0)
    array = rng.random(size)
    frame = pl.DataFrame({"k": rng.integers(0, 1000, size // 4), "v": rng.random(size // 4)})
    con = duckdb.connect(config={"threads": 1})

    def numpy_sort() -> object:
        return np.sort(array, kind="stable")

    def polars_group() -> object:
        # a single-threaded polars job: one thread of the polars pool per call is not
        # guaranteed, so the query stays small and sort-heavy
        return frame.sort("v").group_by("k").agg(pl.col("v").sum())

    def duckdb_query() -> object:
        cur = con.cursor()
        try:
            return cur.sql(f"select sum(i * i) from range({size}) t(i)").fetchall()
        finally:
            cur.close()

    jobs: list[Callable[[], object]] = [numpy_sort] * 4 + [polars_group] * 2 + [duckdb_query] * 2
    return jobs


async def b5(backend: str, quick: bool) -> dict[str, Any]:
    jobs = _gil_releasing_jobs(quick)

    async def serial() -> float:
        t0 = time.perf_counter()
        for job in jobs:
            job()
        return time.perf_counter() - t0

    async def raw_anyio() -> float:
        limiter = anyio.CapacityLimiter(2)
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(functools.partial(anyio.to_thread.run_sync, job, limiter=limiter))
        return time.perf_counter() - t0

    async def concur_group() -> float:
        t0 = time.perf_counter()
        async with concur.TaskGroup(thread_limit=2) as tg:
            for job in jobs:
                tg.spawn(job)
        return time.perf_counter() - t0

    samples = await interleave(
        {"serial": serial, "raw anyio.to_thread": raw_anyio, "concur thread_limit=2": concur_group},
        rounds=3 if quick else 5,
    )
    return {k: summary(v, 1e3) for k, v in samples.items()} | await _b5_processes(quick)


async def _b5_processes(quick: bool) -> dict[str, Any]:
    """B5, GIL-holding: 8 pure-Python jobs, serial vs 2 worker processes.

    concur.ProcessPool(2) against raw ``anyio.to_process.run_sync`` under a limiter of 2
    (the same worker processes serve both: anyio caches them per event-loop run; the
    warm-up round starts them). _pure_python is a module-level function, so the workers
    find it (as __mp_main__._pure_python).
    """
    n = 1_000_000 if quick else 3_000_000
    jobs = 8

    async def serial() -> float:
        t0 = time.perf_counter()
        for _ in range(jobs):
            _pure_python(n)
        return time.perf_counter() - t0

    async def raw_to_process() -> float:
        limiter = anyio.CapacityLimiter(2)
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(jobs):
                tg.start_soon(
                    functools.partial(anyio.to_process.run_sync, _pure_python, n, limiter=limiter)
                )
        return time.perf_counter() - t0

    async def process_pool() -> float:
        t0 = time.perf_counter()
        async with concur.ProcessPool(2) as pool, anyio.create_task_group() as tg:
            for _ in range(jobs):
                tg.start_soon(pool.run, _pure_python, n)
        return time.perf_counter() - t0

    samples = await interleave(
        {
            "GIL-holding serial": serial,
            "GIL-holding raw anyio.to_process": raw_to_process,
            "GIL-holding concur ProcessPool(2)": process_pool,
        },
        rounds=3 if quick else 5,
    )
    return {k: summary(v, 1e3) for k, v in samples.items()}


# --- B6: fail-fast latency -------------------------------------------------------------------


async def b6(backend: str, quick: bool) -> dict[str, Any]:
    siblings = 1_000

    async def sleeper() -> None:
        await anyio.sleep(math.inf)

    async def failing(box: list[float]) -> None:
        await anyio.wait_all_tasks_blocked()
        box.append(time.perf_counter())
        raise ValueError("boom")

    async def with_concur() -> float:
        box: list[float] = []
        try:
            async with concur.TaskGroup() as tg:
                for _ in range(siblings):
                    tg.spawn(sleeper)
                tg.spawn(failing, box)
        except* ValueError:
            pass
        return time.perf_counter() - box[0]

    async def with_anyio() -> float:
        box: list[float] = []
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(siblings):
                    tg.start_soon(sleeper)
                tg.start_soon(failing, box)
        except* ValueError:
            pass
        return time.perf_counter() - box[0]

    samples = await interleave(
        {"concur TaskGroup": with_concur, "anyio task group": with_anyio},
        rounds=3 if quick else 7,
    )
    return {k: summary(v, 1e3) for k, v in samples.items()}


# --- B7: loop lag while sync components run in threads ---------------------------------------


def _pure_python(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


async def _lag_p99(run_jobs: Callable[[], Awaitable[None]]) -> float:
    lags: list[float] = []
    done = anyio.Event()

    async def ticker() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            await anyio.sleep(0.001)
            lags.append(time.perf_counter() - t0 - 0.001)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await run_jobs()
        done.set()
    lags.sort()
    return lags[min(len(lags) - 1, int(len(lags) * 0.99))]


async def b7(backend: str, quick: bool) -> dict[str, Any]:
    releasing = _gil_releasing_jobs(quick=True)
    n_py = 300_000 if quick else 600_000
    holding: list[Callable[[], object]] = [functools.partial(_pure_python, n_py)] * 8

    def concur_runner(jobs: list[Callable[[], object]]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            async with concur.TaskGroup(thread_limit=2) as tg:
                for job in jobs:
                    tg.spawn(job)

        return run

    def anyio_runner(jobs: list[Callable[[], object]]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            limiter = anyio.CapacityLimiter(2)
            async with anyio.create_task_group() as tg:
                for job in jobs:
                    tg.start_soon(functools.partial(anyio.to_thread.run_sync, job, limiter=limiter))

        return run

    def measured(runner: Callable[[], Awaitable[None]]) -> Variant:
        async def sample() -> float:
            return await _lag_p99(runner)

        return sample

    samples = await interleave(
        {
            "GIL-releasing concur": measured(concur_runner(releasing)),
            "GIL-releasing raw anyio": measured(anyio_runner(releasing)),
            "GIL-holding concur": measured(concur_runner(holding)),
            "GIL-holding raw anyio": measured(anyio_runner(holding)),
        },
        rounds=3 if quick else 5,
    )
    return {k: summary(v, 1e3) for k, v in samples.items()}


# --- B9: the handoff itself -------------------------------------------------------------


async def b9(backend: str, quick: bool) -> dict[str, Any]:
    import duckdb
    import polars as pl

    handed = concur.handoff.handed  # the step to_thread runs before the hop, measured alone

    n = 2_000 if quick else 20_000
    con = duckdb.connect()

    def per_call(args: tuple[Any, ...]) -> Variant:
        async def sample() -> float:
            t0 = time.perf_counter()
            for _ in range(n):
                with handed(*args, policy="warn"):
                    pass
            return (time.perf_counter() - t0) / n

        return sample

    variants: dict[str, Variant] = {
        f"polars frame, {width} columns": per_call(
            (pl.DataFrame({f"c{i}": range(10) for i in range(width)}),)
        )
        for width in (10, 100, 1_000)
    }
    variants["DuckDB connection -> cursor, closed"] = per_call((con,))
    variants["5 ints (nothing to hand off)"] = per_call((1, 2, 3, 4, 5))
    # Lists and dicts pass as they are, with UnsafeHandoffWarning (shown once, then
    # filtered as Python does): O(1). A shallow copy would cost O(n), and a tuple of safe
    # values is checked item by item, O(n): measured side by side.
    ints = list(range(1_000))
    variants["list of 1,000 ints (passed, warned)"] = per_call((ints,))
    variants["tuple of 1,000 ints (checked per item)"] = per_call((tuple(ints),))

    async def shallow_copy() -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            list(ints)
        return (time.perf_counter() - t0) / n

    variants["shallow copy of the list (not done)"] = shallow_copy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", concur.UnsafeHandoffWarning)
        samples = await interleave(variants, rounds=3 if quick else 5)
    con.close()
    return {k: summary(v, 1e6) for k, v in samples.items()}


BENCHMARKS = {
    "B1": ("sync call through a thread, µs per call", b1),
    "B2": ("async call, µs per call", b2),
    "B3": ("spawn a task, µs per task (20,000 tasks)", b3),
    "B5": ("8 GIL-releasing jobs on 2 threads; 8 GIL-holding jobs on 2 processes, ms wall", b5),
    "B6": ("fail-fast with 1,000 sleeping siblings, ms to group exit", b6),
    "B7": ("loop lag p99 while 8 sync jobs run on 2 threads, ms", b7),
    "B9": ("handoff of one argument, µs per call (before the thread hop)", b9),
}


async def main_async(backend: str, quick: bool, only: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for key, (title, bench) in BENCHMARKS.items():
        if only and key not in only:
            continue
        results[key] = {"title": title, "figures": await bench(backend, quick)}
        print(f"{key} done", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", default=[])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    # B5 and B7 want single-threaded kernels, so that two threads can really double the
    # work done: pin polars' pool to one thread before polars is first imported (DuckDB
    # gets threads=1 on its connection).
    os.environ.setdefault("POLARS_MAX_THREADS", "1")
    results = anyio.run(main_async, args.backend, args.quick, args.only, backend=args.backend)
    if args.json:
        print(json.dumps({"backend": args.backend, "results": results}))
        return
    for key, block in results.items():
        print(f"\n{key} [{args.backend}] {block['title']}")
        figures = block["figures"]
        for name, fig in figures.items():
            print(
                f"  {name:<40} median {fig['median']:10.2f}  "
                f"(min {fig['min']:.2f}, max {fig['max']:.2f})"
            )


if __name__ == "__main__":
    main()
