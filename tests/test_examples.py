"""Tests that the examples under docs/examples run and print what they claim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def test_core_demo_runs_on_both_backends() -> None:
    """docs/examples/core_demo.py runs on asyncio and trio and prints each behaviour it shows."""
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / "core_demo.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    sections = proc.stdout.split("--- ")[1:]
    assert [s.splitlines()[0] for s in sections] == ["asyncio", "trio"]
    for section in sections:
        assert "column sums (in a thread, on a clone): {'a': 6, 'b': 60, 'total': 66}" in section
        assert "caller's frame still has columns ['a', 'b']" in section
        assert "DuckDB counts on 3 cursors of one connection: [10, 1000, 100000]" in section
        assert "async labels: ['label-0', 'label-1', 'label-2']" in section
        assert "6 sync calls under thread_limit=2: at most 2 ran at once" in section
        assert "results [0, 1, 2, 3, 4, 5]" in section
        assert "fail-fast: ValueError('this component fails') cancelled its sibling" in section
