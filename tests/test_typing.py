"""What users write type-checks under pyright strict too (mypy --strict runs in CI's command).

``tests/typing/user_code.py`` holds user-style code with ``assert_type`` and misuses
marked ``# type: ignore[...]`` that must stay errors; ``docs/examples`` are real programs.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def test_user_code_and_examples_pass_pyright_strict() -> None:
    """pyright (strict, unnecessary ignores reported) accepts them with no error."""
    pyright = shutil.which("pyright")
    if pyright is None:
        pytest.skip("pyright is not installed")
    result = subprocess.run(
        [pyright, "--outputjson", "tests/typing", "docs/examples"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    if result.returncode not in (0, 1):  # 2+: pyright itself could not run (offline, say)
        pytest.skip(f"pyright could not run: {result.stderr.strip()[:300]}")
    assert result.returncode == 0, result.stdout[-4000:]
