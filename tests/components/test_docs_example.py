"""The components example in the docs runs as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "components_demo.py"


def test_components_demo_runs_on_both_backends() -> None:
    """docs/examples/components_demo.py runs on asyncio and trio, with warnings as errors."""
    result = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("selected:") == 2
    assert "delayed      async" in result.stdout
    assert "square       thread" in result.stdout
