"""Run the whole benchmark suite: ``python -m benchmarks [--quick]``.

Each benchmark module runs in a process of its own, once per backend, and measures concur
side by side with its baselines in that one run. This driver prints every table, then the
budget lines: each concur figure as a ratio to its baseline from the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import time
from typing import Any

BACKENDS = ("asyncio", "trio")


def _run_core(backend: str, quick: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_core", "--backend", backend, "--json"]
    if quick:
        cmd.append("--quick")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1])["results"])


def _median(results: dict[str, Any], key: str, name: str) -> float:
    return float(results[key]["figures"][name]["median"])


def _budget_lines(backend: str, r: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    lines: list[tuple[str, str, str, bool]] = []

    def ratio(label: str, num: float, den: float, limit: float) -> None:
        value = num / den
        lines.append((label, f"{value:.2f}x", f"<= {limit:.2f}x", value <= limit))

    for mode in ("", "(abandon)"):
        for calls in ("seq", "40 callers"):
            ratio(
                f"B1 {calls} concur.to_thread{mode} / anyio",
                _median(r, "B1", f"{calls} concur.to_thread{mode}"),
                _median(r, "B1", f"{calls} anyio.to_thread{mode}"),
                1.10,
            )
    if backend == "asyncio":
        ratio(
            "B1 40 callers concur.to_thread / asyncio.to_thread (aim)",
            _median(r, "B1", "40 callers concur.to_thread"),
            _median(r, "B1", "40 callers asyncio.to_thread"),
            1.30,
        )
    over = _median(r, "B2", "concur.call") - _median(r, "B2", "direct await")
    lines.append(
        ("B2 concur.call over a direct await", f"{over:.2f} µs", "<= 1.50 µs", over <= 1.5)
    )
    ratio(
        "B3 TaskGroup.spawn / anyio start_soon",
        _median(r, "B3", "concur TaskGroup.spawn"),
        _median(r, "B3", "anyio start_soon"),
        1.15,
    )
    ratio(
        "B5 concur / raw anyio.to_thread (wall)",
        _median(r, "B5", "concur thread_limit=2"),
        _median(r, "B5", "raw anyio.to_thread"),
        1.05,
    )
    speedup = _median(r, "B5", "serial") / _median(r, "B5", "concur thread_limit=2")
    lines.append(("B5 concur speedup over serial", f"{speedup:.2f}x", "reported", True))
    ratio(
        "B5 ProcessPool(2) / raw anyio.to_process (wall)",
        _median(r, "B5", "GIL-holding concur ProcessPool(2)"),
        _median(r, "B5", "GIL-holding raw anyio.to_process"),
        1.05,
    )
    speedup = _median(r, "B5", "GIL-holding serial") / _median(
        r, "B5", "GIL-holding concur ProcessPool(2)"
    )
    lines.append(
        ("B5 ProcessPool(2) speedup over serial", f"{speedup:.2f}x", ">= 1.70x", speedup >= 1.7)
    )
    ratio(
        "B6 fail-fast concur / anyio",
        _median(r, "B6", "concur TaskGroup"),
        _median(r, "B6", "anyio task group"),
        1.20,
    )
    p99 = _median(r, "B7", "GIL-releasing concur")
    lines.append(("B7 p99 lag, GIL-releasing jobs", f"{p99:.2f} ms", "<= 10 ms", p99 <= 10))
    held = _median(r, "B7", "GIL-holding concur")
    raw = _median(r, "B7", "GIL-holding raw anyio")
    lines.append(
        (
            "B7 p99 lag, GIL-holding jobs",
            f"{held:.2f} ms (raw {raw:.2f})",
            "<= raw + 1 ms",
            held <= raw + 1,
        )
    )
    for width in (10, 100):
        cost = _median(r, "B9", f"polars frame, {width} columns")
        lines.append(
            (f"handoff, polars frame of {width} columns", f"{cost:.2f} µs", "<= 10 µs", cost <= 10)
        )
    cost = _median(r, "B9", "polars frame, 1000 columns")
    lines.append(("handoff, polars frame of 1,000 columns", f"{cost:.2f} µs", "reported", True))
    cost = _median(r, "B9", "DuckDB connection -> cursor, closed")
    lines.append(
        ("handoff, DuckDB connection (cursor + close)", f"{cost:.2f} µs", "<= 10 µs", cost <= 10)
    )
    return lines


def _print_core(backend: str, results: dict[str, Any]) -> None:
    for key, block in results.items():
        print(f"\n{key} [{backend}] {block['title']}")
        for name, fig in block["figures"].items():
            print(
                f"  {name:<42} median {fig['median']:10.2f}  "
                f"(min {fig['min']:.2f}, max {fig['max']:.2f})"
            )


def _run_module(module: str, backend: str | None, quick: bool, *extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        print(f"\n({module} is not there yet)")
        return
    cmd = [sys.executable, "-m", module]
    if backend is not None:
        cmd += ["--backend", backend]
    if quick:
        cmd.append("--quick")
    cmd += extra
    print(f"\n$ {' '.join(cmd[1:])}", flush=True)
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="concur's side-by-side benchmark suite")
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    parser.add_argument("--core-only", action="store_true", help="only B1-B3 and B5-B7")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )
    budget: list[tuple[str, str, str, str, bool]] = []
    for backend in BACKENDS:
        results = _run_core(backend, args.quick)
        _print_core(backend, results)
        budget += [(backend, *line) for line in _budget_lines(backend, results)]
    if not args.core_only:
        _run_module("benchmarks.bench_map", None, args.quick)  # both backends, one process each
        for backend in BACKENDS:
            # 1,000,000 rows, as before the command line's default fell to 100,000 (issue 10)
            rounds = () if args.quick else ("--rounds", "4", "--rows", "1000000")
            _run_module("benchmarks.bench_features", backend, args.quick, *rounds)
        _run_module("benchmarks.bench_memory", None, args.quick)
        _run_module("benchmarks.bench_interrupt", None, args.quick)  # both backends
        _run_module("benchmarks.bench_import", None, args.quick)
        for backend in BACKENDS:
            _run_module("benchmarks.bench_jsonl", backend, args.quick)
    print("\nBudgets (ratios of medians from the same run)")
    for backend, label, value, limit, ok in budget:
        mark = "ok  " if ok else "OVER"
        print(f"  {mark} [{backend:7}] {label:<58} {value:>22}  {limit}")
    print(f"\nsuite ran in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
