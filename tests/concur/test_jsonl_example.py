"""docs/examples/jsonl_echo.py runs as a subprocess: the demo on both backends, and the
server mode, stopped by a real SIGINT."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "jsonl_echo.py"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_demo_prints_ok_and_exits_0(backend: str) -> None:
    """``--demo`` runs server and client on 127.0.0.1 and prints ``OK <n> replies``."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--demo", "--backend", backend],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "OK 100 replies"


@pytest.mark.skipif(sys.platform == "win32", reason="run_until_signal is POSIX only")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_server_mode_serves_until_sigint(backend: str) -> None:
    """Without ``--demo`` the example serves until Ctrl-C, then tears down and exits 0."""
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", "0", "--backend", backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+)", first)
        assert match, first
        with socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=10) as sock:
            sock.sendall(b'{"type":"upper","id":7,"text":"hi"}\n')
            reply = b""
            while b'"upper"' not in reply:  # heartbeats may come first
                chunk = sock.recv(4096)
                assert chunk
                reply += chunk
        lines = [json.loads(line) for line in reply.splitlines()]
        assert {"type": "upper", "text": "HI", "id": 7} in lines
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.splitlines()[-2:] == ["server stopped", "stopped by SIGINT"]


def test_the_pages_first_example_runs() -> None:
    """The first code block of docs/jsonl.rst runs as it is and prints the reply."""
    page = (EXAMPLE.parents[1] / "jsonl.rst").read_text()
    block = page.split(".. code-block:: python\n", 1)[1].split("\nFrames\n", 1)[0]
    code = textwrap.dedent(block)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'type': 'pong', 'id': 1}"
