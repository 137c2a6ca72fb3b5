"""How long ``import concur`` takes, side by side with ``import anyio`` in one run.

Run as ``python -m benchmarks.bench_import [--quick] [--rounds N] [--json]``. Each figure
is the wall time of the statement in a fresh interpreter, after its start-up
(``time.perf_counter`` around it; ``python -X importtime`` shows where it goes); the
statements run interleaved (after one warm-up run that writes the byte-code caches),
round after round, so that they share the machine's noise, and the median of the rounds is reported:

- ``import anyio``: the baseline;
- ``import concur``: the target is at most the baseline + 25 ms;
- ``import concur; concur.TaskGroup; concur.map_async; concur.run``: what a program that
  uses the core, a map and ``concur.run`` pays in all (the features load on first use);
- ``import concur, asyncio`` and ``import asyncio``: what an asyncio app pays on top.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

STATEMENTS = {
    "import anyio": "import anyio",
    "import concur": "import concur",
    "import concur + first use of TaskGroup, map_async, run": (
        "import concur; concur.TaskGroup; concur.map_async; concur.run"
    ),
    "import asyncio": "import asyncio",
    "import asyncio, concur": "import asyncio, concur",
}

_PROBE = "import time; t = time.perf_counter(); {0}; print(round((time.perf_counter() - t) * 1e6))"


# Byte-code caches written and used, as for an installed package: with
# PYTHONDONTWRITEBYTECODE set, every import of concur would compile its source again
# (about 20 ms) while anyio's installed caches are used.
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _import_us(statement: str) -> int:
    """How long *statement* takes in a fresh interpreter (after its start-up), in µs."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(statement)],
        check=True,
        capture_output=True,
        text=True,
        env=_ENV,
    ).stdout
    return int(out.split()[-1])


def measure(rounds: int) -> dict[str, dict[str, float]]:
    samples: dict[str, list[int]] = {name: [] for name in STATEMENTS}
    for statement in STATEMENTS.values():  # warm-up: the byte-code caches are written
        _import_us(statement)
    for _ in range(rounds):
        for name, statement in STATEMENTS.items():
            samples[name].append(_import_us(statement))
    return {
        name: {"median_ms": statistics.median(v) / 1000, "min_ms": min(v) / 1000}
        for name, v in samples.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 10")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 10)
    results = measure(rounds)
    base = results["import anyio"]["median_ms"]
    over = results["import concur"]["median_ms"] - base
    if args.json:
        print(json.dumps({"rounds": rounds, "results": results, "concur_over_anyio_ms": over}))
        return
    print(f"import time, median of {rounds} fresh interpreters ({platform.python_version()})")
    print(f"{'statement':58} {'median ms':>10} {'min ms':>8}")
    for name, figures in results.items():
        print(f"{name:58} {figures['median_ms']:10.1f} {figures['min_ms']:8.1f}")
    verdict = "ok" if over <= 25 else "OVER"
    print(f"import concur - import anyio: {over:.1f} ms (target <= 25 ms): {verdict}")


if __name__ == "__main__":
    main()
