"""Without the backend fast paths, thread calls keep every semantic through anyio's path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def test_core_semantics_hold_on_anyios_own_thread_path() -> None:
    """The core, handoff and scope tests pass with the fast paths turned off."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    files = ["test_calls.py", "test_taskgroup.py", "test_handoff.py", "test_scope.py"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "nofast_plugin"]
        + [str(HERE / name) for name in files],
        capture_output=True,
        text=True,
        env=env,
        cwd=HERE.parent.parent,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout


def test_the_plugin_really_turns_the_fast_path_off() -> None:
    """Under the plugin, asyncio thread calls run on anyio's workers, not concur's."""
    code = (
        "import nofast_plugin, anyio, threading, concur\n"
        "async def main():\n"
        "    return await concur.to_thread(lambda: threading.current_thread().name)\n"
        "print(anyio.run(main))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "concur worker" not in out
    assert out.strip()
