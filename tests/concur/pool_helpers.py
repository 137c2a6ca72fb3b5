"""Functions that the process-pool tests run in worker processes (not a test module).

A worker process finds a function by its module and name, so these live at the top level
of an importable module.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import concur


def square(x: int) -> int:
    return x * x


def pid() -> int:
    return os.getpid()


def fail(message: str) -> int:
    raise ValueError(message)


def check_cancelled_result() -> object:
    return concur.check_cancelled()  # type: ignore[func-returns-value]  # None is the point


def pair(a: object, b: object) -> tuple[object, object]:
    return a, b


def mark_and_sleep(marker: str, seconds: float) -> int:
    """Write this worker's pid to ``<marker>.start``, sleep, then write ``<marker>.end``."""
    Path(marker + ".start").write_text(str(os.getpid()))
    time.sleep(seconds)
    Path(marker + ".end").write_text(str(os.getpid()))
    return os.getpid()


def spin(n: int) -> int:
    """GIL-holding pure-Python work."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total
