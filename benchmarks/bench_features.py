"""The selection runner side by side with serial calls and a hand-written anyio version.

Run as ``python -m benchmarks.bench_features [--quick] [--backend asyncio|trio]``. One
process times, in interleaved rounds (every variant once per round, rotating the order),
on the built-in data set (1,000,000 rows; ``--quick``: 200,000):

- ``runner``: ``await components.select_best_features(...)`` with its defaults;
- ``serial``: the same generators called one after another (``generate()`` in the main
  thread, or ``await agenerate()`` for the async one), then the same selector;
- ``anyio``: a hand-written version: an anyio task group, ``anyio.to_thread.run_sync`` under
  a ``CapacityLimiter`` of the usable CPUs, then the selector in a thread.

All three do the same work: the four CLI generators (lag, rolling, interaction, SQL
window), prefixing, the horizontal concat, and ``CorrelationSelector`` with k=20. A second
scenario adds ``HttpLookupFeatures`` against a local JSON endpoint (its own process, 10 ms
per request), which the serial version must await in turn. It prints min/median/max
seconds per variant and the ratios of the medians (``--no-http`` skips the second
scenario), after a table of each generator alone: wall and process CPU time, which shows
how many cores its own work keeps busy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import polars as pl

import components
from components import (
    CorrelationSelector,
    FeatureGenerator,
    HttpLookupFeatures,
    InteractionFeatures,
    LagFeatures,
    RollingFeatures,
    SQLWindowFeatures,
    SyncFeatureGenerator,
)

from .bench_core import interleave


def _generators(sql: SQLWindowFeatures) -> list[SyncFeatureGenerator]:
    keys = {"entity": "entity", "order": "order"}
    return [LagFeatures(**keys), RollingFeatures(**keys), InteractionFeatures(**keys), sql]


def _prefix(name: str, out: pl.DataFrame) -> pl.DataFrame:
    p = f"{name}__"
    return out.rename({c: c if c.startswith(p) else p + c for c in out.columns})


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


LATENCY = 0.01  # seconds per lookup request, as a remote service would take

_SERVER = """
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        time.sleep(float(sys.argv[1]))
        key = self.path.rsplit("/", 1)[-1]
        body = json.dumps({"score": (int(key) * 7919) % 1000 / 1000}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer.request_queue_size = 256  # the default backlog of 5 drops connections
Handler.protocol_version = "HTTP/1.1"  # keep-alive, as a real service would
Handler.disable_nagle_algorithm = True  # headers and body must not wait for a delayed ACK
httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"""


@contextlib.contextmanager
def _lookup_server() -> Iterator[str]:
    """A JSON lookup endpoint in a process of its own (so it does not share our GIL)."""
    with subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(LATENCY)], stdout=subprocess.PIPE, text=True
    ) as server:
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            yield f"http://127.0.0.1:{port}/lookup/{{key}}"
        finally:
            server.terminate()


async def _generate(g: FeatureGenerator, inputs: pl.DataFrame) -> pl.DataFrame:
    if isinstance(g, SyncFeatureGenerator):
        return g.generate(inputs)
    return await g.agenerate(inputs)


async def bench(rows: int, rounds: int, gens: list[FeatureGenerator]) -> dict[str, Any]:
    frame = components.make_dataset(rows)
    target = components.TARGET
    selector = CorrelationSelector()
    selected: dict[str, tuple[str, ...]] = {}

    async def runner() -> float:
        t0 = time.perf_counter()
        report = await components.select_best_features(
            frame, target=target, generators=gens, selector=selector, k=20
        )
        elapsed = time.perf_counter() - t0
        selected["runner"] = report.selection.names
        return elapsed

    async def serial() -> float:
        t0 = time.perf_counter()
        inputs = frame.drop(target)
        outs = [_prefix(g.name, await _generate(g, inputs)) for g in gens]
        features = pl.concat(outs, how="horizontal")
        selection = selector.select(features, frame.get_column(target), 20)
        features.select(selection.names)
        elapsed = time.perf_counter() - t0
        selected["serial"] = selection.names
        return elapsed

    async def hand_anyio() -> float:
        t0 = time.perf_counter()
        inputs = frame.drop(target)
        limiter = anyio.CapacityLimiter(_cpus())
        outs: list[pl.DataFrame | None] = [None] * len(gens)

        async def one(i: int, g: FeatureGenerator) -> None:
            if isinstance(g, SyncFeatureGenerator):
                out = await anyio.to_thread.run_sync(g.generate, inputs.clone(), limiter=limiter)
            else:
                out = await g.agenerate(inputs.clone())
            outs[i] = _prefix(g.name, out)

        async with anyio.create_task_group() as tg:
            for i, g in enumerate(gens):
                tg.start_soon(one, i, g)
        features = pl.concat([o for o in outs if o is not None], how="horizontal")
        selection = await anyio.to_thread.run_sync(
            selector.select, features, frame.get_column(target), 20, limiter=limiter
        )
        features.select(selection.names)
        elapsed = time.perf_counter() - t0
        selected["anyio"] = selection.names
        return elapsed

    samples = await interleave({"runner": runner, "serial": serial, "anyio": hand_anyio}, rounds)
    assert selected["runner"] == selected["serial"] == selected["anyio"], selected
    figures = {
        name: {
            "min": min(values),
            "median": statistics.median(values),
            "max": max(values),
        }
        for name, values in samples.items()
    }
    med = {name: f["median"] for name, f in figures.items()}
    return {
        "rows": rows,
        "rounds": rounds,
        "figures": figures,
        "speedup_over_serial": med["serial"] / med["runner"],
        "runner_over_anyio": med["runner"] / med["anyio"],
        "anyio_speedup_over_serial": med["serial"] / med["anyio"],
    }


def _alone(rows: int, gens: list[SyncFeatureGenerator]) -> dict[str, tuple[float, float]]:
    """Each generator by itself: how many cores its own work keeps busy."""
    inputs = components.make_dataset(rows).drop(components.TARGET)
    out: dict[str, tuple[float, float]] = {}
    for g in gens:
        best = (math.inf, math.inf)
        for _ in range(3):
            wall, cpu = time.perf_counter(), time.process_time()
            g.generate(inputs)
            sample = (time.perf_counter() - wall, time.process_time() - cpu)
            best = min(best, sample)
        out[g.name] = best
    return out


def _print(title: str, result: dict[str, Any]) -> None:
    print(f"\n{title}")
    print(f"{'variant':<10} {'min s':>8} {'median s':>9} {'max s':>8}")
    for name, f in result["figures"].items():
        print(f"{name:<10} {f['min']:>8.3f} {f['median']:>9.3f} {f['max']:>8.3f}")
    print(f"runner speedup over serial:      {result['speedup_over_serial']:.2f}x")
    print(f"hand-written anyio over serial:  {result['anyio_speedup_over_serial']:.2f}x")
    print(f"runner / hand-written anyio:     {result['runner_over_anyio']:.3f}x (target <= 1.05x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_features")
    parser.add_argument("--quick", action="store_true", help="200,000 rows, 3 rounds")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP scenario")
    args = parser.parse_args(argv)
    rows = args.rows or (200_000 if args.quick else 1_000_000)
    rounds = args.rounds or (3 if args.quick else 7)
    cpus = _cpus()
    print(
        f"bench_features: {rows:,} rows, {rounds} rounds, backend {args.backend}, "
        f"{cpus} usable CPUs, Python {platform.python_version()}, polars {pl.__version__}"
    )
    results: dict[str, Any] = {}
    with SQLWindowFeatures(entity="entity", order="order") as sql:
        gens: list[FeatureGenerator] = list(_generators(sql))
        results["alone"] = _alone(rows, _generators(sql))
        print("\neach generator alone (best of 3): wall s, process CPU s, CPU / wall")
        for name, (wall, cpu) in results["alone"].items():
            print(f"{name:<12} {wall:>7.3f} {cpu:>7.3f} {cpu / wall:>6.2f}")
        results["cpu"] = anyio.run(bench, rows, rounds, gens, backend=args.backend)
        _print("the four CLI generators (all sync: lag, rolling, interaction, SQL)", results["cpu"])
        if not args.no_http:
            with _lookup_server() as url:
                lookup = HttpLookupFeatures(url=url, key="entity")
                results["http"] = anyio.run(
                    bench, rows, rounds, [lookup, *gens], backend=args.backend
                )
            _print(
                f"the same plus HttpLookupFeatures ({rows // 1000:,} keys, "
                f"{LATENCY * 1000:.0f} ms per request, 16 at once)",
                results["http"],
            )
    if args.json:
        print(json.dumps({"backend": args.backend, "cpus": cpus, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
