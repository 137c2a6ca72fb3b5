"""User-style code of WorkerPool, concur.jsonl and the signal helpers, type-checked, never
run. Each ``assert_type`` states what a checker must infer; each ``# type: ignore[...]``
line is a misuse the checkers must reject.
"""

# pyright: strict, reportUnnecessaryTypeIgnoreComment=true

from __future__ import annotations

import signal
from typing import Any, assert_type

import anyio

import concur
import concur.jsonl


def parse(text: str) -> int:
    return int(text)


async def fetch(url: str) -> bytes:
    await anyio.sleep(0)
    return url.encode()


async def worker_pool() -> None:
    async with concur.WorkerPool(4, queue_size=10, results_size=10) as pool:
        job = await pool.submit(parse, "1")
        assert_type(job, concur.Job[int])
        assert_type(await job, int)
        other = await pool.submit(fetch, "u", name="fetch")
        assert_type(await other, bytes)
        await pool.submit(parse, 1)  # type: ignore[arg-type]
        assert_type(job.status, concur.JobStatus)
        trigger = pool.every(5.0, parse, "2")
        assert_type(trigger, concur.Trigger)
        trigger.cancel()
        assert_type(pool.statistics(), concur.WorkerPoolStatistics)
        pool.close()


router = concur.jsonl.Router(limit=8)


@router.route("ping")
def ping(message: dict[str, Any]) -> dict[str, Any]:
    return {"type": "pong", "n": message.get("n")}


async def handle(ch: concur.jsonl.JsonLinesStream) -> None:
    await router.serve(ch)


async def channels() -> None:
    async with concur.jsonl.serve(handle, port=0) as server:
        assert_type(server.port, int)
        async with await concur.jsonl.connect("127.0.0.1", server.port) as ch:
            await ch.send({"type": "ping", "id": 1})
            reply: object = await ch.receive()
            del reply
        assert_type(server.statistics(), concur.jsonl.ServerStatistics)


async def service() -> None:
    async def setup() -> int:
        return 1

    async def teardown() -> None:
        pass

    async with concur.lifespan(setup, teardown) as value:
        assert_type(value, int)
    got = await concur.run_until_signal(channels, signals=(signal.SIGTERM,))
    assert_type(got, signal.Signals | None)
