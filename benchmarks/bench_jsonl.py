"""concur.jsonl side by side with a plain anyio line protocol: frames/s over TCP on 127.0.0.1.

Run ``python -m benchmarks.bench_jsonl [--quick]``: each backend runs in a process of its
own (``--backend asyncio`` runs one inline, ``--json`` prints its figures as JSON in
``bench_core``'s shape). Two workloads, each frame a small JSON object
(``{"type": "ping", "id": i, "payload": 32 bytes}``):

- ``J1 ping-pong``: one client sends a frame and waits for the echo, N times;
- ``J2 one-way``: one client sends N frames, one ``send()`` each; the server reads them
  all and answers once at the end.

Contenders: ``concur.jsonl`` (``serve`` + ``connect``, ``JsonLinesStream.send`` /
``receive``), ``concur.jsonl Router`` (J1 only: an async route, with ``id`` echo), and
the baseline: anyio's TCP listener and ``connect_tcp`` with
``BufferedByteReceiveStream.receive_until(b"\\n", max_frame)`` and ``send(line)``, doing
the same JSON encoding and decoding. Rounds are interleaved (every contender once per
round, rotating); figures are frames/s, min/median/max over the rounds. The budget:
concur.jsonl >= 0.8x the baseline's median throughput.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

import concur
from benchmarks.bench_core import interleave

BACKENDS = ("asyncio", "trio")
MAX_FRAME = 1_048_576
BUDGET = 0.8
PAYLOAD = "x" * 32


def frame(i: int) -> dict[str, Any]:
    return {"type": "ping", "id": i, "payload": PAYLOAD}


def encode(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


# --- the baseline: anyio byte streams and receive_until ---------------------------------------


class BaselineLine:
    """The hand-written line protocol over an anyio byte stream."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.buffered = BufferedByteReceiveStream(stream)

    async def send(self, obj: object) -> None:
        await self.stream.send(encode(obj))

    async def receive(self) -> Any:
        line = await self.buffered.receive_until(b"\n", MAX_FRAME)
        if len(line) > MAX_FRAME:  # receive_until can return more than asked
            raise ValueError("frame too large")
        return json.loads(line)


async def baseline_server(
    handler: Callable[[BaselineLine], Awaitable[None]], tg: anyio.abc.TaskGroup
) -> tuple[int, anyio.abc.Listener[Any]]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def one(stream: anyio.abc.ByteStream) -> None:
        async with stream:
            with contextlib.suppress(anyio.EndOfStream, anyio.IncompleteRead):
                await handler(BaselineLine(stream))

    tg.start_soon(listener.serve, one)
    return port, listener


# --- server handlers --------------------------------------------------------------------------


async def echo(ch: Any) -> None:
    while True:
        try:
            message = await ch.receive()
        except (anyio.EndOfStream, anyio.IncompleteRead):
            return
        await ch.send(message)


async def count_then_answer(ch: Any) -> None:
    n = 0
    while True:
        message = await ch.receive()
        if message == "end":
            await ch.send({"count": n})
            return
        n += 1


# --- client workloads -------------------------------------------------------------------------


async def ping_pong(ch: Any, n: int) -> None:
    for i in range(n):
        await ch.send(frame(i))
        reply = await ch.receive()
        assert reply["id"] == i, reply


async def one_way(ch: Any, n: int) -> None:
    for i in range(n):
        await ch.send(frame(i))
    await ch.send("end")
    reply = await ch.receive()
    assert reply == {"count": n}, reply


Workload = Callable[[Any, int], Awaitable[None]]


def router() -> concur.jsonl.Router:
    r = concur.jsonl.Router(limit=16)

    @r.route("ping")
    async def ping(message: dict[str, Any]) -> dict[str, Any]:
        return message

    return r


async def measure(quick: bool) -> dict[str, Any]:
    n = 2_000 if quick else 20_000
    rounds = 5 if quick else 9
    results: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        echo_port, echo_listener = await baseline_server(echo, tg)
        count_port, count_listener = await baseline_server(count_then_answer, tg)
        async with (
            concur.jsonl.serve(echo) as concur_echo,
            concur.jsonl.serve(count_then_answer) as concur_count,
            concur.jsonl.serve(router().serve) as concur_router,
        ):

            def concur_variant(port: int, workload: Workload) -> Callable[[], Awaitable[float]]:
                async def sample() -> float:
                    async with await concur.jsonl.connect("127.0.0.1", port) as ch:
                        started = time.perf_counter()
                        await workload(ch, n)
                        return time.perf_counter() - started

                return sample

            def baseline_variant(port: int, workload: Workload) -> Callable[[], Awaitable[float]]:
                async def sample() -> float:
                    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                        started = time.perf_counter()
                        await workload(BaselineLine(stream), n)
                        return time.perf_counter() - started

                return sample

            for key, title, variants in (
                (
                    "J1",
                    f"ping-pong, one client, {n:,} round trips: frames/s",
                    {
                        "concur.jsonl": concur_variant(concur_echo.port, ping_pong),
                        "concur.jsonl Router": concur_variant(concur_router.port, ping_pong),
                        "anyio receive_until": baseline_variant(echo_port, ping_pong),
                    },
                ),
                (
                    "J2",
                    f"one-way stream, one client, {n:,} frames: frames/s",
                    {
                        "concur.jsonl": concur_variant(concur_count.port, one_way),
                        "anyio receive_until": baseline_variant(count_port, one_way),
                    },
                ),
            ):
                samples = await interleave(variants, rounds)
                results[key] = {
                    "title": title,
                    "figures": {
                        name: {
                            "min": n / max(times),
                            "median": n / statistics.median(times),
                            "max": n / min(times),
                        }
                        for name, times in samples.items()
                    },
                }
                print(f"{key} done", file=sys.stderr, flush=True)
        tg.cancel_scope.cancel()
    await echo_listener.aclose()
    await count_listener.aclose()
    return results


def budget_lines(results: dict[str, Any]) -> list[tuple[str, float, bool]]:
    lines = []
    for key in ("J1", "J2"):
        figures = results[key]["figures"]
        ratio = figures["concur.jsonl"]["median"] / figures["anyio receive_until"]["median"]
        lines.append((f"{key} concur.jsonl / anyio receive_until", ratio, ratio >= BUDGET))
    return lines


def report(all_results: dict[str, dict[str, Any]]) -> None:
    keys = list(next(iter(all_results.values())))
    for key in keys:
        title = next(iter(all_results.values()))[key]["title"]
        print(f"\n{key} {title}, median (min / max)")
        names = list(next(iter(all_results.values()))[key]["figures"])
        print(f"  {'':<22}" + "".join(f"{backend:>32}" for backend in all_results))
        for name in names:
            cells = []
            for results in all_results.values():
                fig = results[key]["figures"][name]
                cells.append(f"{fig['median']:>10,.0f} ({fig['min']:>8,.0f} / {fig['max']:>8,.0f})")
            print(f"  {name:<22}" + "".join(f"{cell:>32}" for cell in cells))
    print(f"\n  budget: concur.jsonl >= {BUDGET:.2f}x the baseline's frames/s")
    for backend, results in all_results.items():
        for label, ratio, ok in budget_lines(results):
            print(f"  {'ok  ' if ok else 'OVER'} [{backend:<7}] {label:<44} {ratio:.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, default=None)
    parser.add_argument("--quick", action="store_true", help="2,000 frames, 5 rounds")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.backend is not None:
        results = anyio.run(measure, args.quick, backend=args.backend)
        if args.json:
            print(json.dumps({"backend": args.backend, "results": results}))
        else:
            report({args.backend: results})
        return
    all_results: dict[str, dict[str, Any]] = {}
    for backend in BACKENDS:
        cmd = [sys.executable, "-m", "benchmarks.bench_jsonl", "--backend", backend, "--json"]
        cmd += ["--quick"] if args.quick else []
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        all_results[backend] = json.loads(out.strip().splitlines()[-1])["results"]
    report(all_results)


if __name__ == "__main__":
    main()
