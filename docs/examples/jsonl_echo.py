"""A JSON Lines server and client in one file: ``python docs/examples/jsonl_echo.py --demo``.

The server is a :class:`concur.jsonl.Router`: a sync handler (``echo``, run in a worker
thread), an async one (``upper``, on the event loop) and a sender on a schedule (a
``heartbeat`` every 50 ms), set up and torn down with :func:`concur.lifespan`.

The client is the two overlapping loops of a networked client, in one task group: a
receiver reads the replies and, for each ``echo`` reply, asks for the ``upper`` of its
text; a sender sends what is queued. Between them runs a bounded queue (a memory object
stream of 16), read through :func:`concur.streams.batch` so that whatever is queued goes
out with one ``send_many`` (one write). The producer of the first requests writes into the
same queue. Everything waits on everything else with bounds: a full queue slows the
receiver, a slow server slows the sender (back-pressure), nothing grows without limit.

``--demo`` runs server and client on 127.0.0.1 (a free port), checks every reply, prints
``OK <n> replies`` and exits 0. Without it, the server listens on ``--port`` (default
8765) until Ctrl-C (or SIGTERM), through :func:`concur.run_until_signal`; try it with
``printf '{"type":"upper","id":1,"text":"hi"}\\n' | nc 127.0.0.1 8765``.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

import anyio
import anyio.abc

import concur
from concur.jsonl import JsonLinesStream, Router

REQUESTS = 50
Queue = anyio.abc.ObjectSendStream[dict[str, Any]]

router = Router(limit=8, timeout=5.0)


@router.route("echo")
def echo(message: dict[str, Any]) -> dict[str, Any]:
    """A sync handler: runs in a worker thread, under the ambient limiter."""
    return {"type": "echo", "text": message["text"], "thread": threading.current_thread().name}


@router.route("upper")
async def upper(message: dict[str, Any]) -> dict[str, Any]:
    """An async handler: runs on the event loop (here it waits 1 ms, as I/O would)."""
    await anyio.sleep(0.001)
    return {"type": "upper", "text": str(message["text"]).upper()}


@router.every(0.05)
def heartbeat() -> dict[str, Any]:
    """Sent every 50 ms on each connection, while it is served."""
    return {"type": "heartbeat"}


# --- the server --------------------------------------------------------------------------------


def open_store() -> dict[str, int]:
    """Setup, in a worker thread (a sync function): what the server needs while it runs."""
    return {"served": 0}


def close_store() -> None:
    """Teardown: runs however the server stops (returning, failing, Ctrl-C)."""
    print("server stopped", flush=True)


async def run_server(port: int) -> None:
    """Serve until cancelled (by Ctrl-C through run_until_signal)."""
    async with (
        concur.lifespan(open_store, close_store),
        concur.jsonl.serve(router.serve, port=port) as server,
    ):
        print(f"serving JSON Lines on 127.0.0.1:{server.port}; Ctrl-C stops", flush=True)
        await anyio.sleep_forever()


# --- the client --------------------------------------------------------------------------------


async def client(port: int, n: int) -> dict[int, Any]:
    """Send *n* echo requests, and an upper request for each echo reply; return the
    replies by id."""
    replies: dict[int, Any] = {}
    heartbeats = 0
    queue_in, queue_out = anyio.create_memory_object_stream[dict[str, Any]](16)

    async def sender(ch: JsonLinesStream) -> None:
        async with queue_out, concur.streams.batch(queue_out, 16, timeout=0.005) as batches:
            async for batch in batches:
                await ch.send_many(batch)  # one write for the whole batch
        await ch.send_eof()  # no more requests: the server answers the rest, then ends

    async def producer(queue: Queue) -> None:
        async with queue:
            for i in range(n):
                await queue.send({"type": "echo", "id": i, "text": f"message {i}"})

    async def receiver(
        ch: JsonLinesStream, queue: anyio.abc.ObjectSendStream[dict[str, Any]]
    ) -> None:
        nonlocal heartbeats
        async with queue:
            async for message in ch:
                if message["type"] == "heartbeat":
                    heartbeats += 1
                    continue
                replies[message["id"]] = message
                if message["type"] == "echo":
                    follow_up = {"type": "upper", "id": n + message["id"], "text": message["text"]}
                    await queue.send(follow_up)
                if len(replies) == 2 * n:
                    break

    async with await concur.jsonl.connect("127.0.0.1", port, timeout=5) as ch:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender, ch)
            tg.start_soon(producer, queue_in.clone())
            tg.start_soon(receiver, ch, queue_in.clone())
            queue_in.close()  # the queue ends when producer and receiver are done
        print(f"client: {heartbeats} heartbeats while the replies came", flush=True)
    return replies


async def demo() -> int:
    """Server and client on a free port of 127.0.0.1; returns how many replies came."""
    async with concur.jsonl.serve(router.serve) as server:
        replies = await client(server.port, REQUESTS)
    for i in range(REQUESTS):
        assert replies[i]["text"] == f"message {i}", replies[i]
        assert replies[REQUESTS + i]["text"] == f"MESSAGE {i}", replies[REQUESTS + i]
    return len(replies)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="run server and client, then exit")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args(argv)
    if args.demo:
        n = concur.run(demo, backend=args.backend)
        print(f"OK {n} replies")
        return
    received = concur.run(concur.run_until_signal, run_server, args.port, backend=args.backend)
    print(f"stopped by {received.name if received else 'the server itself'}")


if __name__ == "__main__":
    main()
