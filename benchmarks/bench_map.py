"""Bounded maps side by side: concur.map_async / concur.amap vs aiometer and raw pools.

Run ``python -m benchmarks.bench_map [--quick]``: each backend runs in a process of its
own (``--backend asyncio`` runs one inline). 20,000 jobs that only yield (one checkpoint
each, the map's own overhead laid bare), then 10,000 jobs that wait 1 ms on a timer (what
most real jobs do), at limit=100, every variant once per round, rounds interleaved in a
rotating order; figures are jobs/s (min/median/max over the rounds) and the peak RSS
growth during a sample. Then
``concur.amap`` over 10k, 100k and 1,000,000 items shows that its memory is flat.

``--versus REV`` measures B4 of this tree's ``map_async`` and ``amap`` against the map
engine of git revision *REV* (its ``src/concur/_map.py``, loaded beside this tree's under
another name, so it must be a one-file engine over this tree's ``concur._core``), rounds
interleaved, ``--rounds`` of them (default 15): an A/B test of a change to the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiometer
import anyio
import anyio.lowlevel
import psutil

import concur
from benchmarks.bench_core import interleave

LIMIT = 100
Sample = Callable[[], Awaitable[float]]

_PROC = psutil.Process()


@contextmanager
def peak_rss() -> Iterator[list[int]]:
    """Sample RSS every 2 ms in a thread; yields a box that receives the peak growth."""
    box = [0]
    start = _PROC.memory_info().rss
    stop = threading.Event()

    def sampler() -> None:
        peak = start
        while not stop.wait(0.002):
            peak = max(peak, _PROC.memory_info().rss)
        box[0] = max(peak, _PROC.memory_info().rss) - start

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        stop.set()
        thread.join()


def _job_for(backend: str, wait: float = 0.0) -> Callable[[int], Awaitable[int]]:
    """A job that only yields (``wait == 0``), or that waits *wait* seconds on a timer."""
    if backend == "trio":
        import trio

        checkpoint = trio.lowlevel.checkpoint
        sleep = trio.sleep

        async def trio_job(i: int) -> int:
            await checkpoint()
            return i

        async def trio_timer_job(i: int) -> int:
            await sleep(wait)
            return i

        return trio_timer_job if wait else trio_job

    async def asyncio_job(i: int) -> int:
        await asyncio.sleep(wait)
        return i

    return asyncio_job


# --- the variants: each returns the list of results (or consumes a stream) -----------------


def variants(backend: str, n: int, wait: float) -> dict[str, Callable[[], Awaitable[Any]]]:
    job = _job_for(backend, wait)

    async def concur_map_async() -> Any:
        return await concur.map_async(job, range(n), limit=LIMIT)

    async def aiometer_run_all() -> Any:
        return await aiometer.run_all(
            [functools.partial(job, i) for i in range(n)], max_at_once=LIMIT
        )

    async def concur_amap() -> Any:
        out = []
        async with concur.amap(job, range(n), limit=LIMIT) as results:
            async for r in results:
                out.append(r)
        return out

    async def aiometer_amap() -> Any:
        out = []
        async with aiometer.amap(job, range(n), max_at_once=LIMIT) as results:
            async for r in results:
                out.append(r)
        return out

    async def anyio_pool() -> Any:
        results: list[Any] = [None] * n
        send, recv = anyio.create_memory_object_stream[int](LIMIT)

        async def worker() -> None:
            async for i in recv:
                results[i] = await job(i)

        async with recv, anyio.create_task_group() as tg:
            for _ in range(LIMIT):
                tg.start_soon(worker)
            async with send:
                for i in range(n):
                    await send.send(i)
        return results

    async def anyio_pool_stream() -> Any:
        send, recv = anyio.create_memory_object_stream[int](LIMIT)
        out_send, out_recv = anyio.create_memory_object_stream[int](LIMIT)
        out = []

        async def worker(out_send: Any) -> None:
            async with out_send:
                async for i in recv:
                    await out_send.send(await job(i))

        async def producer() -> None:
            async with send:
                for i in range(n):
                    await send.send(i)

        async with anyio.create_task_group() as tg:
            async with out_send:
                for _ in range(LIMIT):
                    tg.start_soon(worker, out_send.clone())
                tg.start_soon(producer)
            async with out_recv:
                async for r in out_recv:
                    out.append(r)
        return out

    async def anyio_limiter() -> Any:
        limiter = anyio.CapacityLimiter(LIMIT)
        results: list[Any] = [None] * n

        async def one(i: int) -> None:
            async with limiter:
                results[i] = await job(i)

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
        return results

    out: dict[str, Callable[[], Awaitable[Any]]] = {
        "concur.map_async": concur_map_async,
        "aiometer.run_all": aiometer_run_all,
        "concur.amap": concur_amap,
        "aiometer.amap": aiometer_amap,
        "anyio worker pool": anyio_pool,
        "anyio worker pool (stream)": anyio_pool_stream,
        "anyio CapacityLimiter+tg": anyio_limiter,
    }

    if backend == "asyncio":

        async def raw_asyncio() -> Any:
            sem = asyncio.Semaphore(LIMIT)

            async def one(i: int) -> int:
                try:
                    return await job(i)
                finally:
                    sem.release()

            tasks = []
            for i in range(n):
                await sem.acquire()
                tasks.append(asyncio.create_task(one(i)))
            return await asyncio.gather(*tasks)

        out["raw asyncio Semaphore"] = raw_asyncio
    else:
        import trio

        async def raw_trio() -> Any:
            limiter = trio.CapacityLimiter(LIMIT)
            results: list[Any] = [None] * n

            async def one(i: int) -> None:
                try:
                    results[i] = await job(i)
                finally:
                    limiter.release_on_behalf_of(i)

            async with trio.open_nursery() as nursery:
                for i in range(n):
                    await limiter.acquire_on_behalf_of(i)
                    nursery.start_soon(one, i)
            return results

        out["raw trio CapacityLimiter"] = raw_trio
    return out


def _timed(
    fn: Callable[[], Awaitable[Any]], n: int, rss: dict[str, list[int]], name: str
) -> Sample:
    async def sample() -> float:
        with peak_rss() as box:
            started = time.perf_counter()
            result = await fn()
            elapsed = time.perf_counter() - started
        if result is not None:
            assert len(result) == n, (name, len(result))
        rss.setdefault(name, []).append(box[0])
        return elapsed

    return sample


async def heap_peak(fn: Callable[[], Awaitable[Any]]) -> int:
    """The peak of Python's traced heap during one (untimed) run of *fn*, in bytes."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        await fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


async def throughput(backend: str, n: int, rounds: int, wait: float) -> list[dict[str, Any]]:
    rss: dict[str, list[int]] = {}
    contenders = variants(backend, n, wait)
    samples = await interleave(
        {name: _timed(fn, n, rss, name) for name, fn in contenders.items()},
        rounds,
    )
    heap = {name: await heap_peak(fn) for name, fn in contenders.items()}
    rows = []
    for name, times in samples.items():
        rows.append(
            {
                "name": name,
                "min": n / max(times),
                "median": n / statistics.median(times),
                "max": n / min(times),
                "rss_mib": statistics.median(rss[name]) / 2**20,
                "heap_mib": heap[name] / 2**20,
            }
        )
    return rows


async def flat_memory(backend: str, sizes: list[int]) -> list[tuple[int, float, float, float]]:
    """``concur.amap`` over *sizes* items: (items, seconds, RSS growth, heap peak), MiB.

    Runs first in the process, so that no earlier variant has grown the heap already.
    """
    job = _job_for(backend)
    rows = []
    for n in sizes:
        count = 0

        async def consume(n: int = n) -> None:
            nonlocal count
            async with concur.amap(job, range(n), limit=LIMIT) as results:
                async for _ in results:
                    count += 1

        with peak_rss() as box:
            started = time.perf_counter()
            await consume()
            elapsed = time.perf_counter() - started
        assert count == n
        heap = await heap_peak(consume)
        rows.append((n, elapsed, box[0] / 2**20, heap / 2**20))
    return rows


def report(backend: str, rows: list[dict[str, Any]], n: int, what: str) -> None:
    by = {row["name"]: row for row in rows}
    print(
        f"\n[{backend}] {n:,} {what} at limit={LIMIT}: "
        "jobs/s median (min / max), peak RSS growth, peak traced heap"
    )
    for row in rows:
        print(
            f"  {row['name']:<28} {row['median']:>9,.0f}  "
            f"({row['min']:>9,.0f} / {row['max']:>9,.0f})   {row['rss_mib']:6.1f} MiB"
            f"  {row['heap_mib']:7.2f} MiB"
        )
    raw = "raw asyncio Semaphore" if backend == "asyncio" else "raw trio CapacityLimiter"
    print(f"\n[{backend}] ratios of median throughput (concur / baseline; > 1 is faster)")
    baselines = ["aiometer", "anyio worker pool", "anyio CapacityLimiter+tg", raw]
    for ours, peer, pool in (
        ("concur.map_async", "aiometer.run_all", "anyio worker pool"),
        ("concur.amap", "aiometer.amap", "anyio worker pool (stream)"),
    ):
        cells = []
        for base in baselines:
            name = peer if base == "aiometer" else (pool if base == "anyio worker pool" else base)
            cells.append(f"{name}: {by[ours]['median'] / by[name]['median']:.2f}x")
        print(f"  {ours:<18} " + ", ".join(cells))
    print("\n  budgets:")
    for ours, peer, pool in (
        ("concur.map_async", "aiometer.run_all", "anyio worker pool"),
        ("concur.amap", "aiometer.amap", "anyio worker pool (stream)"),
    ):
        speed = by[ours]["median"] / by[peer]["median"]
        time_ratio = by[pool]["median"] / by[ours]["median"]
        print(f"  {'ok  ' if speed >= 1.5 else 'OVER'} {ours} / {peer}: {speed:.2f}x (>= 1.50x)")
        print(
            f"  {'ok  ' if time_ratio <= 1.3 else 'OVER'} {ours} time / {pool} time: "
            f"{time_ratio:.2f}x (<= 1.30x)"
        )


def report_memory(backend: str, flat: list[tuple[int, float, float, float]]) -> None:
    print(
        f"\n[{backend}] concur.amap memory, limit={LIMIT}: "
        "items, seconds, peak RSS growth, peak traced heap"
    )
    for items, seconds, mib, heap in flat:
        print(f"  {items:>10,} items  {seconds:7.2f} s  {mib:6.1f} MiB  {heap:7.3f} MiB")


async def main_async(backend: str, quick: bool) -> None:
    n = 5_000 if quick else 20_000
    rounds = 3 if quick else 5
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    flat = await flat_memory(backend, sizes)
    rows = await throughput(backend, n, rounds, 0.0)
    report(backend, rows, n, "jobs that only yield (one checkpoint each, no timer or I/O)")
    # what most real jobs do: wait on a timer (or I/O); the map's own overhead then matters
    # less, and every variant approaches limit / wait jobs/s
    n_timer = 2_000 if quick else 10_000
    rows = await throughput(backend, n_timer, rounds, 0.001)
    report(backend, rows, n_timer, "jobs that wait 1 ms on a timer")
    report_memory(backend, flat)


# --- A/B: this tree's map engine against a git revision's -----------------------------------


def engine_at(rev: str) -> Any:
    """The module ``src/concur/_map.py`` of git revision *rev*, loaded as a sibling of
    this tree's modules (``concur._map_at_rev``), so that its relative imports resolve."""
    text = subprocess.run(
        ["git", "show", f"{rev}:src/concur/_map.py"], check=True, capture_output=True, text=True
    ).stdout
    name = "concur._map_at_rev"
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "concur"
    sys.modules[name] = module
    exec(compile(text, f"{rev}:src/concur/_map.py", "exec"), module.__dict__)
    return module


def _list_map(engine: Any, job: Any, n: int) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        return await engine.map_async(job, range(n), limit=LIMIT)

    return run


def _stream_map(engine: Any, job: Any, n: int) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        out = []
        async with engine.amap(job, range(n), limit=LIMIT) as results:
            async for r in results:
                out.append(r)
        return out

    return run


def _cpu_timed(fn: Callable[[], Awaitable[Any]], n: int, wall: list[float]) -> Sample:
    """A sample of *fn*: the CPU time of the event loop's thread (what other processes on
    a busy machine disturb least), its wall time appended to *wall*."""

    async def sample() -> float:
        started, cpu = time.perf_counter(), time.thread_time()
        result = await fn()
        cpu = time.thread_time() - cpu
        wall.append(time.perf_counter() - started)
        assert len(result) == n
        return cpu

    return sample


async def versus(backend: str, rev: str, rounds: int) -> None:
    """B4's map_async and amap, this tree against *rev*: wall time and the loop thread's
    CPU time, medians over the rounds and the median of the per-round ratios."""
    old = engine_at(rev)
    for n, wait in ((20_000, 0.0), (10_000, 0.001)):
        job = _job_for(backend, wait)
        contenders = {
            "map_async (this tree)": _list_map(concur, job, n),
            f"map_async ({rev})": _list_map(old, job, n),
            "amap (this tree)": _stream_map(concur, job, n),
            f"amap ({rev})": _stream_map(old, job, n),
        }
        walls: dict[str, list[float]] = {name: [] for name in contenders}
        cpus = await interleave(
            {name: _cpu_timed(fn, n, walls[name]) for name, fn in contenders.items()}, rounds
        )
        for name in walls:
            del walls[name][0]  # the warm-up run
        what = "jobs that only yield" if not wait else f"jobs that wait {wait * 1e3:g} ms"
        print(f"\n[{backend}] {n:,} {what}, limit={LIMIT}, {rounds} rounds")
        print(f"  {'':<26} {'wall jobs/s: median':>20} {'(min / max)':>21}   {'CPU us/job':>10}")
        for name, times in walls.items():
            print(
                f"  {name:<26} {n / statistics.median(times):>20,.0f}"
                f"  ({n / max(times):>8,.0f} / {n / min(times):>8,.0f})"
                f"   {statistics.median(cpus[name]) / n * 1e6:>10.3f}"
            )
        for kind in ("map_async", "amap"):
            new, base = f"{kind} (this tree)", f"{kind} ({rev})"
            wall = statistics.median(walls[new]) / statistics.median(walls[base]) - 1
            cpu = statistics.median(cpus[new]) / statistics.median(cpus[base]) - 1
            paired = statistics.median(a / b for a, b in zip(cpus[new], cpus[base], strict=True))
            print(
                f"  {kind}: this tree vs {rev}: wall median {wall:+.1%}, CPU median {cpu:+.1%},"
                f" CPU per-round ratio median {paired - 1:+.1%}"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--versus", metavar="REV", help="A/B of the map engine against REV")
    parser.add_argument("--rounds", type=int, default=15, help="rounds of --versus")
    args = parser.parse_args(argv)
    if args.backend is None:
        for backend in ("asyncio", "trio"):
            cmd = [sys.executable, "-m", "benchmarks.bench_map", "--backend", backend]
            if args.quick:
                cmd.append("--quick")
            if args.versus:
                cmd += ["--versus", args.versus, "--rounds", str(args.rounds)]
            subprocess.run(cmd, check=True)
        return
    if args.versus:
        anyio.run(versus, args.backend, args.versus, args.rounds, backend=args.backend)
        return
    anyio.run(main_async, args.backend, args.quick, backend=args.backend)


if __name__ == "__main__":
    main()
