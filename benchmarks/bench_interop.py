"""Calling async code from sync code: concur's entry points side by side with anyio's.

Run as ``python -m benchmarks.bench_interop [--quick] [--backend asyncio|trio]``. One
process times, in interleaved rounds (every variant once per round, rotating the order),
the cost of one call of a trivial async function from a sync caller:

- ``Runner.run``: one :class:`concur.Runner` for the whole run (one loop, one thread);
- ``shared portal.call``: one ``anyio.from_thread.start_blocking_portal`` for the whole run;
- ``portal per call``: a blocking portal started and stopped around each call;
- ``anyio.run``: a fresh event loop in the calling thread per call;
- ``concur.run (on a loop)``: ``concur.run`` from sync code on a running asyncio loop (a
  background loop thread per call, as in a notebook cell).

It prints min/median/max microseconds per call for each variant and the ratio of each
median to ``Runner.run``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

import anyio
import anyio.from_thread
import anyio.lowlevel

import concur


async def noop() -> None:
    await anyio.lowlevel.checkpoint()


def _time_per_call(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    options = parser.parse_args()
    backend = options.backend
    rounds = 3 if options.quick else 7
    many = 200 if options.quick else 2_000
    few = 10 if options.quick else 50

    with (
        concur.Runner(backend) as runner,
        anyio.from_thread.start_blocking_portal(backend) as portal,
    ):

        def per_call_portal() -> None:
            with anyio.from_thread.start_blocking_portal(backend) as fresh:
                fresh.call(noop)

        def on_a_loop() -> float:
            async def cell() -> float:
                return _time_per_call(lambda: concur.run(noop, backend=backend), few)

            return asyncio.run(cell())

        variants: dict[str, Callable[[], float]] = {
            "Runner.run": lambda: _time_per_call(lambda: runner.run(noop), many),
            "shared portal.call": lambda: _time_per_call(lambda: portal.call(noop), many),
            "portal per call": lambda: _time_per_call(per_call_portal, few),
            "anyio.run": lambda: _time_per_call(lambda: anyio.run(noop, backend=backend), few),
            "concur.run (on a loop)": on_a_loop,
        }
        names = list(variants)
        samples: dict[str, list[float]] = {name: [] for name in names}
        for round_ in range(rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                samples[name].append(variants[name]())

    base = statistics.median(samples["Runner.run"])
    print(f"backend={backend} rounds={rounds} (µs per call)")
    print(f"{'variant':<24} {'min':>9} {'median':>9} {'max':>9} {'/ Runner.run':>13}")
    for name in names:
        values = samples[name]
        median = statistics.median(values)
        print(
            f"{name:<24} {min(values):>9.1f} {median:>9.1f} {max(values):>9.1f}"
            f" {median / base:>12.2f}x"
        )


if __name__ == "__main__":
    main()
