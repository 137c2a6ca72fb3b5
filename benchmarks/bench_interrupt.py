"""Cancel latency of a thread call inside a running DuckDB query, before and after interrupts.

Run as ``python -m benchmarks.bench_interrupt [--quick]``: each backend runs in a process of
its own (``--backend asyncio`` runs one inline, ``--json`` prints its figures as JSON).

The thread call runs ``SELECT sum(hash(i)) FROM range(N)``, with N calibrated on this
machine so that the query alone runs about 10 s (``--quick``: 3 s). 0.2 s into the query
it is cancelled, in two scenarios:

- ``fail-fast``: a sibling in a :class:`concur.TaskGroup` raises ``ValueError``; the
  latency runs from the ``raise`` to the group's exit;
- ``timeout``: ``concur.call(..., timeout=0.2)``; the latency runs from the deadline (on
  the loop's clock) to the ``TimeoutError`` reaching the caller.

``after`` hands the caller's connection to the call, so concur passes a cursor of its own
and interrupts it when the call is cancelled. ``before`` is what any thread call did
before: ``handoff="off"`` and a ``con.cursor()`` made inside the thread, so nothing can
interrupt the query and the caller waits for its end (one round; it takes the query's
whole duration). Figures are milliseconds, median (min / max) over the rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import duckdb

import concur

CANCEL_AFTER = 0.2  # seconds into the query
BUDGET_MS = 50.0
SCENARIOS = ("fail-fast", "timeout")
VARIANTS = ("before", "after")
BACKENDS = ("asyncio", "trio")


def heavy(rows: int) -> str:
    return f"SELECT sum(hash(i)) FROM range({rows}) t(i)"


def calibrate(con: duckdb.DuckDBPyConnection, seconds: float) -> tuple[int, float]:
    """The rows of ``heavy()`` that make a query of about *seconds*, and its estimate."""
    probe = 100_000_000
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        con.execute(heavy(probe)).fetchall()
        best = min(best, time.perf_counter() - t0)
    rows = int(probe * seconds / best)
    return rows, rows * best / probe


class Round:
    """One thread call running the heavy query; records whether DuckDB was interrupted."""

    def __init__(self, sql: str, variant: str) -> None:
        self.sql = sql
        self.variant = variant
        self.started = threading.Event()
        self.interrupted = False

    def after(self, cursor: duckdb.DuckDBPyConnection) -> object:
        """Run on the cursor concur handed over (and interrupts when cancelled)."""
        self.started.set()
        try:
            return cursor.execute(self.sql).fetchall()
        except duckdb.InterruptException:
            self.interrupted = True
            raise

    def before(self, con: duckdb.DuckDBPyConnection) -> object:
        """Run on a cursor of our own: nothing knows of it, so nothing interrupts it."""
        cursor = con.cursor()
        try:
            self.started.set()
            return cursor.execute(self.sql).fetchall()
        finally:
            cursor.close()

    @property
    def fn(self) -> Callable[[duckdb.DuckDBPyConnection], object]:
        return self.after if self.variant == "after" else self.before

    @property
    def policy(self) -> concur.handoff.Policy:
        return "warn" if self.variant == "after" else "off"


async def fail_fast(con: duckdb.DuckDBPyConnection, job: Round) -> float:
    """Seconds from a sibling's failure to the group's exit."""
    failed_at: list[float] = []

    async def fail() -> None:
        assert await anyio.to_thread.run_sync(job.started.wait, 60)
        await anyio.sleep(CANCEL_AFTER)
        failed_at.append(time.perf_counter())
        raise ValueError("a sibling failed")

    try:
        async with concur.TaskGroup(handoff=job.policy) as tg:
            tg.spawn(job.fn, con)
            tg.spawn(fail)
    except* ValueError:
        pass
    return time.perf_counter() - failed_at[0]


async def timeout(con: duckdb.DuckDBPyConnection, job: Round) -> float:
    """Seconds from the call's deadline to its TimeoutError."""
    with concur.scope(handoff=job.policy):
        deadline = anyio.current_time() + CANCEL_AFTER
        try:
            await concur.call(job.fn, con, timeout=CANCEL_AFTER)
        except TimeoutError:
            pass
        else:
            raise AssertionError("the call did not time out")
        return anyio.current_time() - deadline


async def measure(quick: bool) -> dict[str, Any]:
    with duckdb.connect() as con:
        rows, estimate = calibrate(con, 3.0 if quick else 10.0)
        sql = heavy(rows)
        print(f"query: {sql} (about {estimate:.1f} s alone)", file=sys.stderr, flush=True)
        rounds = {"before": 1, "after": 5 if quick else 20}
        figures: dict[str, dict[str, Any]] = {}
        for name, scenario in (("fail-fast", fail_fast), ("timeout", timeout)):
            figures[name] = {}
            for variant in VARIANTS:
                if variant == "after":
                    await scenario(con, Round(sql, variant))  # warm-up: threads, hooks
                samples: list[float] = []
                interrupted = 0
                for _ in range(rounds[variant]):
                    job = Round(sql, variant)
                    samples.append(await scenario(con, job) * 1000)
                    interrupted += job.interrupted
                figures[name][variant] = {
                    "min": min(samples),
                    "median": statistics.median(samples),
                    "max": max(samples),
                    "rounds": len(samples),
                    "interrupted": interrupted,
                }
                print(f"{name} {variant} done", file=sys.stderr, flush=True)
    return {"sql": sql, "query_seconds": estimate, "figures": figures}


def report(results: dict[str, dict[str, Any]]) -> None:
    print("\ncancel latency of a thread call 0.2 s into a DuckDB query, ms")
    for backend, result in results.items():
        print(f"  [{backend}] {result['sql']}: about {result['query_seconds']:.1f} s alone")
    print(
        f"\n  {'scenario':<10} {'backend':<8} {'variant':<7} {'median':>10}"
        f"  {'(min / max)':<24} {'rounds':>6}  interrupted"
    )
    for scenario in SCENARIOS:
        for backend, result in results.items():
            for variant in VARIANTS:
                fig = result["figures"][scenario][variant]
                spread = f"({fig['min']:.1f} / {fig['max']:.1f})"
                print(
                    f"  {scenario:<10} {backend:<8} {variant:<7} {fig['median']:>10.1f}"
                    f"  {spread:<24} {fig['rounds']:>6}  {fig['interrupted']}/{fig['rounds']}"
                )
    print(f"\n  budget: after, median under {BUDGET_MS:.0f} ms")
    for scenario in SCENARIOS:
        for backend, result in results.items():
            after = result["figures"][scenario]["after"]["median"]
            before = result["figures"][scenario]["before"]["median"]
            mark = "ok  " if after < BUDGET_MS else "OVER"
            print(
                f"  {mark} {scenario:<10} [{backend:<7}] {after:8.1f} ms "
                f"(before: {before:,.0f} ms, {before / after:,.0f}x)"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, default=None)
    parser.add_argument("--quick", action="store_true", help="3 s queries, 5 rounds")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.backend is not None:
        result = anyio.run(measure, args.quick, backend=args.backend)
        if args.json:
            print(json.dumps({"backend": args.backend, **result}))
        else:
            report({args.backend: result})
        return
    results: dict[str, dict[str, Any]] = {}
    for backend in BACKENDS:
        cmd = [sys.executable, "-m", "benchmarks.bench_interrupt", "--backend", backend]
        cmd += ["--json", *(["--quick"] if args.quick else [])]
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        results[backend] = json.loads(out.strip().splitlines()[-1])
    report(results)


if __name__ == "__main__":
    main()
