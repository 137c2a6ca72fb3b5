"""Time and peak memory of the quick start's main job, ``concur features`` with no file.

Run as ``python -m benchmarks.bench_memory [--quick] [--json]``. Every figure comes from a
fresh process:

- the command itself, ``python -m components features --rows N --format json``, on the
  default data set (``components.DEFAULT_ROWS`` rows) and on 1,000,000 rows (the default
  before issue 10): wall time (min and median of 5 runs, interleaved; ``--quick``: 1)
  and peak RSS (the child's ``ru_maxrss``, from ``os.wait4``);
- a probe on 1,000,000 rows: it imports what the command imports, reads its RSS, runs
  the command's main job (``components._cli.run_job``: data set, generators, selector,
  without printing), reads its peak RSS (``resource.getrusage``), then sizes the frames
  with ``estimated_size()``: the input (the data set), the output (the selected
  features, whose columns share the candidates' buffers), and the candidates (every
  generator's output, which the runner holds at once for the selector to score).

The target it checks: peak RSS minus RSS after imports at most 2x input plus output. The
candidates line shows where the rest goes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

MIB = 1024 * 1024
BIG = 1_000_000


def _peak_rss() -> int:
    """This process's peak RSS in bytes."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux counts KiB


def _probe(rows: int) -> dict[str, Any]:
    """The main job in this process: RSS after imports, peak RSS, frame sizes (bytes)."""
    import gc
    import importlib

    import polars as pl
    import psutil

    for module in ("anyio", "duckdb", "pyarrow.compute", "rich.console", "rich.progress"):
        importlib.import_module(module)  # what the command imports, before the baseline

    from components import SyncFeatureGenerator, _cli

    gc.collect()
    after_imports = psutil.Process().memory_info().rss
    args = _cli.build_parser().parse_args(["features", "--rows", str(rows)])
    started = time.perf_counter()
    frame, report = _cli.run_job(args, lambda text: None)
    seconds = time.perf_counter() - started
    peak = _peak_rss()
    # sized after the peak was read: the candidates are made again, one generator at a time
    generators, _ = _cli._components(args, True)
    inputs = frame.drop(args.target)
    candidates = 0
    for generator in generators:
        assert isinstance(generator, SyncFeatureGenerator)
        out = generator.generate(inputs)
        candidates += out.estimated_size()
        del out
        close = getattr(generator, "close", None)
        if close is not None:
            close()
    return {
        "rows": rows,
        "job_seconds": seconds,
        "rss_after_imports": after_imports,
        "peak_rss": peak,
        "input": frame.estimated_size(),
        "output": report.features.estimated_size(),
        "candidates": candidates,
        "candidate_columns": sum(run.columns for run in report.generators),
        "selected": len(report.selection.names),
        "polars": pl.__version__,
    }


def _command(rows: int) -> tuple[float, int | None]:
    """One run of the command in a child process: wall seconds and peak RSS in bytes."""
    cmd = [sys.executable, "-m", "components", "features", "--rows", str(rows)]
    cmd += ["--format", "json"]
    started = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not hasattr(os, "wait4"):  # pragma: no cover (not on Unix)
        child.wait()
        return time.perf_counter() - started, None
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {child.returncode}")
    peak = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    return seconds, peak


def _run_probe(rows: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_memory", "--probe", str(rows)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def _mib(value: float) -> str:
    return f"{value / MIB:,.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    import components

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_memory")
    parser.add_argument("--quick", action="store_true", help="one run of each command")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    parser.add_argument("--probe", type=int, metavar="ROWS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe is not None:
        print(json.dumps(_probe(args.probe)))
        return 0
    runs = 1 if args.quick else 5
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"bench_memory: concur features on the built-in data set, {cpus} usable CPUs, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )
    results: dict[str, Any] = {"commands": {}}
    sizes = list(dict.fromkeys((components.DEFAULT_ROWS, BIG)))
    samples: dict[int, list[tuple[float, int | None]]] = {rows: [] for rows in sizes}
    for _ in range(runs):  # interleaved, so a busy spell of the machine hits both sizes
        for rows in sizes:
            samples[rows].append(_command(rows))
    print(f"\nthe command, start-up included ({runs} run{'s' if runs > 1 else ''})")
    print(f"{'rows':>10} {'min s':>7} {'median s':>9} {'peak RSS':>10}")
    for rows in sizes:
        walls = [wall for wall, _ in samples[rows]]
        peaks = [peak for _, peak in samples[rows] if peak is not None]
        peak = max(peaks) if peaks else None
        results["commands"][rows] = {"wall_seconds": walls, "peak_rss": peak}
        label = "the default" if rows == components.DEFAULT_ROWS else "the default until issue 10"
        shown = "n/a" if peak is None else _mib(peak)
        print(
            f"{rows:>10,} {min(walls):>7.2f} {statistics.median(walls):>9.2f} {shown:>10}  {label}"
        )
    probe = results["probe"] = _run_probe(BIG)
    used = probe["peak_rss"] - probe["rss_after_imports"]
    budget = 2 * (probe["input"] + probe["output"])
    rest = used - probe["input"] - probe["candidates"]
    verdict = "ok" if used <= budget else f"OVER ({used / budget:.1f}x)"
    print(f"\nthe main job in a probe process, {BIG:,} rows ({probe['job_seconds']:.2f} s)")
    lines = [
        ("RSS after imports", _mib(probe["rss_after_imports"])),
        ("peak RSS", _mib(probe["peak_rss"])),
        ("peak RSS - RSS after imports", _mib(used)),
        ("input frame (the data set)", _mib(probe["input"])),
        (f"output frame ({probe['selected']} selected features)", _mib(probe["output"])),
        ("target: at most 2 x (input + output)", f"{_mib(budget)}  {verdict}"),
        (
            f"candidates ({probe['candidate_columns']} columns, held at once)",
            _mib(probe["candidates"]),
        ),
        ("the rest (making the data set, generator intermediates)", _mib(rest)),
    ]
    for label, value in lines:
        print(f"  {label:<56} {value:>16}")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
