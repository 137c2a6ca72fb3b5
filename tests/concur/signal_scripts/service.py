"""A service run by tests/concur/test_signals.py as a subprocess, stopped by real signals.

Usage: ``python service.py BACKEND SCENARIO GRACE``. It prints ``ready`` once
``run_until_signal`` has installed its handlers, then a line per step of its shutdown,
then ``result <signal name or None>`` and ``restored <bool>`` (whether the signal handlers
in place before ``run_until_signal`` are back).

Scenarios:

- ``async`` / ``sync``: a lifespan with async (or sync) setup and teardown around a body
  that waits forever; the teardown prints ``teardown done``.
- ``stuck``: two tasks; one in a lifespan whose teardown never ends by itself (it prints
  ``teardown started``, and ``teardown cancelled <time.monotonic()>`` when cut short), the
  other with cleanup under a bare shield (``cleanup started``) that waits for a line on
  stdin, then prints ``cleanup done``.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from typing import Any

import anyio

import concur


def say(*words: object) -> None:
    print(*words, flush=True)


async def lifespan_service(kind: str) -> None:
    loop_thread = threading.get_ident()

    def sync_setup() -> str:
        say("setup in a worker thread", threading.get_ident() != loop_thread)
        return "resource"

    def sync_teardown() -> None:
        say("teardown in a worker thread", threading.get_ident() != loop_thread)
        say("teardown done")

    async def async_setup() -> str:
        await anyio.lowlevel.checkpoint()
        return "resource"

    async def async_teardown() -> None:
        await anyio.sleep(0.01)  # the teardown awaits, shielded from the cancellation
        say("teardown done")

    if kind == "sync":
        span: Any = concur.lifespan(sync_setup, sync_teardown)
    else:
        span = concur.lifespan(async_setup, async_teardown)
    async with span as value:
        say("setup gave", value)
        say("ready")
        await anyio.sleep_forever()


async def stuck_service() -> None:
    async def teardown() -> None:
        say("teardown started")
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            say("teardown cancelled", time.monotonic())
            raise

    async def in_lifespan(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        # no teardown_timeout: only run_until_signal can cut this teardown short
        async with concur.lifespan(anyio.lowlevel.checkpoint, teardown, teardown_timeout=math.inf):
            task_status.started()
            await anyio.sleep_forever()

    async def shielded(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        try:
            task_status.started()
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                say("cleanup started")
                await anyio.to_thread.run_sync(sys.stdin.readline)
                say("cleanup done")

    async with anyio.create_task_group() as tg:
        await tg.start(in_lifespan)
        await tg.start(shielded)
        say("ready")


async def entry(scenario: str, grace: float) -> None:
    watched = (signal.SIGINT, signal.SIGTERM)
    before = {sig: signal.getsignal(sig) for sig in watched}
    if scenario == "stuck":
        result = await concur.run_until_signal(stuck_service, grace=grace)
    else:
        result = await concur.run_until_signal(lifespan_service, scenario, grace=grace)
    say("result", result.name if result is not None else None)
    say("restored", before == {sig: signal.getsignal(sig) for sig in watched})


def main() -> None:
    # a shell may start background jobs with SIGINT ignored: act as a script run by hand
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    backend, scenario, grace = sys.argv[1], sys.argv[2], float(sys.argv[3])
    concur.run(entry, scenario, grace, backend=backend)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
