"""A tour of concur's component-call core: run it with ``python docs/examples/core_demo.py``.

A task group runs async and sync components side by side; sync ones go to worker threads
under a hard cap of two, a polars frame is handed to them as a clone, a DuckDB connection
as a fresh cursor each, and a failure cancels the siblings.
"""

from __future__ import annotations

import threading
import time

import anyio
import duckdb
import polars as pl

import concur


def column_sums(frame: pl.DataFrame) -> dict[str, int]:
    """A sync component: polars work, in a thread, on a clone of the caller's frame."""
    frame = frame.with_columns(total=pl.col("a") + pl.col("b"))  # the caller's is untouched
    return {name: int(frame[name].sum()) for name in frame.columns}


def count_rows(con: duckdb.DuckDBPyConnection, n: int) -> int:
    """A sync component: a DuckDB query, on a cursor of its own, closed after the call."""
    rows = con.sql(f"select count(*) from range({n})").fetchall()
    return int(rows[0][0])


async def fetch_label(key: int) -> str:
    """An async component: waits on the loop, never in a thread."""
    await anyio.sleep(0.01)
    return f"label-{key}"


def slow_and_cooperative() -> None:
    """A sync component that stops early once its caller is cancelled."""
    while True:
        concur.check_cancelled()
        time.sleep(0.005)


def broken() -> None:
    raise ValueError("this component fails")


async def main() -> None:
    frame = pl.DataFrame({"a": [1, 2, 3], "b": [10, 20, 30]})
    con = duckdb.connect()
    peak = 0
    running = 0
    lock = threading.Lock()

    def capped(i: int) -> int:
        nonlocal peak, running
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return i

    async with concur.TaskGroup(name="demo", thread_limit=2) as tg:
        sums = tg.spawn(column_sums, frame)
        counts = [tg.spawn(count_rows, con, n) for n in (10, 1_000, 100_000)]
        labels = [tg.spawn(fetch_label, k) for k in range(3)]
        capped_runs = [tg.spawn(capped, i) for i in range(6)]
    print(f"column sums (in a thread, on a clone): {await sums}")
    print(f"caller's frame still has columns {frame.columns}")
    print(f"DuckDB counts on 3 cursors of one connection: {[await h for h in counts]}")
    print(f"async labels: {[await h for h in labels]}")
    print(
        f"6 sync calls under thread_limit=2: at most {peak} ran at once, "
        f"results {[await h for h in capped_runs]}"
    )

    try:
        async with concur.TaskGroup() as tg:
            tg.spawn(slow_and_cooperative)
            tg.spawn(broken)
    except* ValueError as group:
        print(f"fail-fast: {group.exceptions[0]!r} cancelled its sibling thread")
    con.close()


if __name__ == "__main__":
    for backend in ("asyncio", "trio"):
        print(f"--- {backend}")
        anyio.run(main, backend=backend)
