"""concur.jsonl.Router over real sockets on 127.0.0.1, asyncio and trio."""

from __future__ import annotations

import gc
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import concur
from concur.jsonl import JsonLinesStream, Router


@asynccontextmanager
async def routed(router: Router, **kwargs: Any) -> AsyncIterator[tuple[JsonLinesStream, Any]]:
    """A client connected to a server running *router*; yields (client, server)."""
    async with (
        concur.jsonl.serve(router.serve, **kwargs) as server,
        await concur.jsonl.connect("127.0.0.1", server.port) as ch,
    ):
        yield ch, server


async def receive_n(ch: JsonLinesStream, n: int) -> list[Any]:
    return [await ch.receive() for _ in range(n)]


def by_id(replies: list[Any]) -> dict[Any, Any]:
    return {reply["id"]: reply for reply in replies}


async def test_sync_and_async_handlers_reply_with_the_request_id() -> None:
    """Sync handlers run in worker threads, async ones on the loop; replies echo ``id``;
    ``None`` sends nothing; a reply with its own id keeps it."""
    router = Router()
    loop_thread = threading.get_ident()
    threads: list[int] = []

    @router.route("sync")
    def sync_handler(message: dict[str, Any]) -> dict[str, Any]:
        threads.append(threading.get_ident())
        message["seen"] = True  # the handler owns the message: no handoff warning
        return {"type": "sync", "echo": message}

    @router.route("async")
    async def async_handler(message: dict[str, Any]) -> dict[str, Any]:
        threads.append(threading.get_ident())
        return {"type": "async"}

    @router.route("quiet")
    def quiet(message: Any) -> None:
        return None

    @router.route("own-id")
    async def own_id(message: Any) -> dict[str, Any]:
        return {"type": "own", "id": "mine"}

    @router.route("list")
    async def list_reply(message: Any) -> list[int]:
        return [1, 2]

    async with routed(router) as (ch, _):
        await ch.send_many(
            [
                {"type": "sync", "id": 1, "x": [1]},
                {"type": "async", "id": 2},
                {"type": "quiet", "id": 3},
                {"type": "own-id", "id": 4},
                {"type": "async"},
                {"type": "list", "id": 6},
            ]
        )
        replies = await receive_n(ch, 5)
    assert [1, 2] in replies
    replies.remove([1, 2])
    keyed = {reply.get("id"): reply for reply in replies}
    echoed = {"type": "sync", "id": 1, "x": [1], "seen": True}
    assert keyed[1] == {"type": "sync", "echo": echoed, "id": 1}
    assert keyed[2] == {"type": "async", "id": 2}
    assert keyed["mine"] == {"type": "own", "id": "mine"}
    assert keyed[None] == {"type": "async"}  # no id in the request: none added
    assert threads.count(loop_thread) == 2  # the async calls
    assert len([t for t in threads if t != loop_thread]) == 1  # the sync one, in a thread


async def test_router_keeps_no_reference_to_a_message_given_to_a_sync_handler() -> None:
    """While a sync handler runs, no router frame refers to its message."""
    router = Router()
    holders: list[str] = []

    @router.route("look")
    def look(message: dict[str, Any]) -> dict[str, Any]:
        for referrer in gc.get_referrers(message):
            code = getattr(referrer, "cr_code", None) or getattr(referrer, "f_code", None)
            if code is not None and code.co_filename.endswith("_jsonl_router.py"):
                holders.append(code.co_name)
            if isinstance(referrer, list):
                holders.append("a list")
        return {"type": "looked"}

    async with routed(router) as (ch, _):
        await ch.send({"type": "look", "id": 1})
        assert await ch.receive() == {"type": "looked", "id": 1}
    assert holders == []


async def test_error_replies() -> None:
    """Unknown routes, non-objects, missing or non-str keys, failures, timeouts and bad
    frames get ``{"type": "error", "id": ..., "error": ...}`` and reading goes on."""
    router = Router(key="op", timeout=0.05, limit=8)

    @router.route("fail")
    async def fail(message: Any) -> None:
        raise KeyError("missing thing")

    @router.route("slow")
    async def slow(message: Any) -> None:
        await anyio.sleep_forever()

    @router.route("unencodable")
    async def unencodable(message: Any) -> set[int]:
        return {1}

    @router.route("ok")
    async def ok(message: Any) -> dict[str, Any]:
        return {"op": "ok"}

    async with routed(router, max_frame=100) as (ch, _):
        await ch.send_many(
            [
                {"op": "nope", "id": 1},
                {"type": "ok", "id": 2},
                {"op": 5, "id": 3},
                [1, 2],
                {"op": "fail", "id": 5},
                {"op": "slow", "id": 6},
                {"op": "unencodable", "id": 7},
            ]
        )
        await ch.transport_stream.send(b"{bad json\n" + b"[" + b"0," * 100 + b"0]\n")
        await ch.send({"op": "ok", "id": 8})
        replies = await receive_n(ch, 10)
    errors = [r for r in replies if r.get("type") == "error"]
    assert {"op": "ok", "id": 8} in replies
    assert all(set(r) == {"type", "id", "error"} for r in errors)
    keyed = by_id([r for r in errors if r["id"] is not None])
    assert "nope" in keyed[1]["error"]
    assert "'op'" in keyed[2]["error"]  # lacks the key field
    assert "'op'" in keyed[3]["error"]  # key not a str
    assert keyed[5]["error"] == "KeyError: 'missing thing'"
    assert keyed[6]["error"].startswith("TimeoutError")
    assert keyed[7]["error"].startswith("TypeError")
    anonymous = [r["error"] for r in errors if r["id"] is None]
    assert len(anonymous) == 3  # the list, the bad frame, the oversized one
    assert any(text.startswith("BadFrame") for text in anonymous)
    assert any(text.startswith("FrameTooLarge") for text in anonymous)


async def test_sync_handler_timing_out_holds_its_slot_until_its_thread_returns() -> None:
    """A sync handler that times out stops at check_cancelled; its slot stays taken until
    its thread returns, so with limit=1 the next frame waits for it."""
    router = Router(limit=1, timeout=0.05)
    events: list[str] = []

    @router.route("spin")
    def spin(message: Any) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.001)
            try:
                concur.check_cancelled()
            except BaseException:
                events.append("stopped")
                raise

    @router.route("next")
    def next_one(message: Any) -> dict[str, Any]:
        events.append("next")
        return {"type": "next"}

    async with routed(router) as (ch, _):
        await ch.send_many([{"type": "spin", "id": 1}, {"type": "next", "id": 2}])
        first, second = await receive_n(ch, 2)
    assert first["error"].startswith("TimeoutError")
    assert second == {"type": "next", "id": 2}
    assert events == ["stopped", "next"]


async def test_limit_is_never_exceeded_and_reading_waits() -> None:
    """With limit=3, at most 3 handlers run; the 4th frame is not read meanwhile."""
    router = Router(limit=3)
    running = 0
    most = 0
    gate = anyio.Event()

    @router.route("work")
    async def work(message: Any) -> dict[str, Any]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await gate.wait()
        await anyio.sleep(0)
        running -= 1
        return {"type": "done"}

    async with routed(router) as (ch, server):
        await ch.send_many([{"type": "work", "id": i} for i in range(1, 40)])
        while running < 3:
            await anyio.wait_all_tasks_blocked()
            await anyio.sleep(0.001)
        await anyio.wait_all_tasks_blocked()
        frames_read = server.statistics().frames_in
        gate.set()
        replies = await receive_n(ch, 39)
    assert most == 3
    assert frames_read == 3  # the 4th frame waits for a free slot
    assert sorted(r["id"] for r in replies) == list(range(1, 40))


async def test_limit_measured_under_load_with_sync_and_async_handlers() -> None:
    """Randomly slow sync and async handlers over several connections: per connection,
    handlers in flight never exceed limit, and every request is answered."""
    import random

    router = Router(limit=4)
    in_flight: dict[int, int] = {}
    most: dict[int, int] = {}
    lock = threading.Lock()  # guards the two dicts: sync handlers run in threads

    def enter(conn: int) -> None:
        with lock:
            in_flight[conn] = in_flight.get(conn, 0) + 1
            most[conn] = max(most.get(conn, 0), in_flight[conn])

    def leave(conn: int) -> None:
        with lock:
            in_flight[conn] -= 1

    @router.route("async")
    async def a(message: dict[str, Any]) -> dict[str, Any]:
        enter(message["conn"])
        await anyio.sleep(random.random() / 500)
        leave(message["conn"])
        return {"type": "ok"}

    @router.route("sync")
    def s(message: dict[str, Any]) -> dict[str, Any]:
        enter(message["conn"])
        time.sleep(random.random() / 500)
        leave(message["conn"])
        return {"type": "ok"}

    async def client(conn: int, port: int) -> None:
        async with await concur.jsonl.connect("127.0.0.1", port) as ch:
            requests = [
                {"type": random.choice(["async", "sync"]), "id": i, "conn": conn} for i in range(60)
            ]
            await ch.send_many(requests)
            replies = await receive_n(ch, 60)
            assert sorted(r["id"] for r in replies) == list(range(60))

    async with concur.jsonl.serve(router.serve) as server, anyio.create_task_group() as tg:
        for conn in range(5):
            tg.start_soon(client, conn, server.port)
    assert set(most) == set(range(5))
    assert max(most.values()) <= 4
    assert all(count == 0 for count in in_flight.values())


async def test_on_error_close_closes_without_reply_and_cancels_in_flight() -> None:
    """With on_error="close", a failure closes the connection (no error reply), cancels
    the handlers in flight, and serve() returns normally."""
    router = Router(on_error="close")
    cancelled: list[bool] = []
    returned = anyio.Event()

    @router.route("hang")
    async def hang(message: Any) -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    @router.route("fail")
    def fail(message: Any) -> None:
        raise RuntimeError("no")

    async def handler(ch: JsonLinesStream) -> None:
        await router.serve(ch)
        returned.set()

    async with (
        concur.jsonl.serve(handler) as server,
        await concur.jsonl.connect("127.0.0.1", server.port) as ch,
    ):
        await ch.send({"type": "hang", "id": 1})
        await anyio.wait_all_tasks_blocked()
        await ch.send({"type": "fail", "id": 2})
        with pytest.raises(anyio.EndOfStream):
            await ch.receive()
        await returned.wait()
    assert cancelled == [True]


@pytest.mark.parametrize("what", ["unknown", "bad-frame"])
async def test_on_error_close_also_applies_to_unknown_routes_and_bad_frames(what: str) -> None:
    """With on_error="close", an unknown route or a bad frame closes the connection."""
    router = Router(on_error="close")

    @router.route("ok")
    def ok(message: Any) -> dict[str, Any]:
        return {"type": "ok"}

    async with routed(router) as (ch, server):
        if what == "unknown":
            await ch.send({"type": "nope"})
        else:
            await ch.transport_stream.send(b"{nope\n")
        with pytest.raises(anyio.EndOfStream):
            await ch.receive()
    assert server.statistics().frames_out == 0


async def test_end_of_input_answers_requests_in_flight_after_half_close() -> None:
    """When the peer half-closes, serve() stops reading, answers what is in flight, and
    returns."""
    router = Router()
    returned = anyio.Event()

    @router.route("slow")
    async def slow(message: Any) -> dict[str, Any]:
        await anyio.sleep(0.02)
        return {"type": "slow"}

    async def handler(ch: JsonLinesStream) -> None:
        await router.serve(ch)
        returned.set()

    async with (
        concur.jsonl.serve(handler) as server,
        await concur.jsonl.connect("127.0.0.1", server.port) as ch,
    ):
        await ch.send_many([{"type": "slow", "id": i} for i in range(5)])
        await ch.send_eof()
        replies = [reply async for reply in ch]
        await returned.wait()
    assert sorted(r["id"] for r in replies) == list(range(5))


async def test_vanished_peer_ends_serve_normally() -> None:
    """A peer that goes away while handlers run ends serve() normally (no error)."""
    router = Router()
    started = anyio.Event()
    outcome: list[str] = []

    @router.route("wait")
    async def wait(message: Any) -> dict[str, Any]:
        started.set()
        await anyio.sleep(0.05)
        return {"type": "late", "pad": "x" * 100_000}

    async def handler(ch: JsonLinesStream) -> None:
        try:
            await router.serve(ch)
            outcome.append("returned")
        except BaseException as exc:  # pragma: no cover - the failure being tested for
            outcome.append(repr(exc))
            raise

    async with concur.jsonl.serve(handler) as server:
        ch = await concur.jsonl.connect("127.0.0.1", server.port)
        await ch.send_many([{"type": "wait", "id": i} for i in range(3)])
        await started.wait()
        await ch.aclose()
    assert outcome == ["returned"]


async def test_every_sends_on_a_schedule_alongside_replies_and_stops_with_connection() -> None:
    """An ``every`` sender sends its messages while requests are answered; None sends
    nothing; it stops when the connection ends."""
    router = Router()
    calls: list[int] = []

    @router.every(0.01)
    def tick() -> dict[str, Any] | None:
        calls.append(1)
        return {"type": "tick", "n": len(calls)} if len(calls) % 2 else None

    @router.every(0.015)
    async def tock() -> dict[str, Any]:
        return {"type": "tock"}

    @router.route("ping")
    async def ping(message: Any) -> dict[str, Any]:
        return {"type": "pong"}

    async with routed(router) as (ch, _):
        await ch.send({"type": "ping", "id": 1})
        seen: list[str] = []
        ticks: list[int] = []
        kinds = ["tick", "tick", "tick", "tock", "pong"]
        while any(seen.count(kind) < kinds.count(kind) for kind in set(kinds)):
            message = await ch.receive()
            seen.append(message["type"])
            if message["type"] == "tick":
                ticks.append(message["n"])
            if message["type"] == "pong":
                assert message == {"type": "pong", "id": 1}
        assert ticks[:3] == [1, 3, 5]
        await ch.send_eof()
        async for _ in ch:  # the rest, until the server side ends
            pass
    stopped_at = len(calls)
    await anyio.sleep(0.05)
    assert len(calls) == stopped_at


async def test_every_failure_is_an_error_reply() -> None:
    """A sender that raises gets an error message with ``"id": None``."""
    router = Router()

    @router.every(0.01)
    async def broken() -> None:
        raise ValueError("sender broke")

    async with routed(router) as (ch, _):
        message = await ch.receive()
    assert message == {"type": "error", "id": None, "error": "ValueError: sender broke"}


async def test_handler_failures_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A failing handler is logged with its traceback on ``concur.jsonl``."""
    router = Router()

    @router.route("fail")
    def fail(message: Any) -> None:
        raise ZeroDivisionError("x")

    async with routed(router) as (ch, _):
        await ch.send({"type": "fail"})
        assert (await ch.receive())["error"] == "ZeroDivisionError: x"
    records = [r for r in caplog.records if r.name == "concur.jsonl"]
    assert len(records) == 1
    assert records[0].exc_info is not None


def test_bad_arguments() -> None:
    """limit < 1, timeout <= 0, unknown on_error, every(seconds <= 0), duplicate routes
    and non-callables are refused at the call, naming the argument."""
    with pytest.raises(ValueError, match="limit"):
        Router(limit=0)
    with pytest.raises(ValueError, match="timeout"):
        Router(timeout=0)
    with pytest.raises(ValueError, match="on_error"):
        Router(on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key"):
        Router(key=1)  # type: ignore[arg-type]
    router = Router()
    with pytest.raises(ValueError, match="seconds"):
        router.every(0)
    with pytest.raises(ValueError, match="seconds"):
        router.every(-1)
    router.route("a")(print)
    with pytest.raises(ValueError, match="'a'"):
        router.route("a")
    with pytest.raises(TypeError):
        router.route("b")(3)  # type: ignore[type-var]
    assert router.routes == {"a": print}


# --- randomized: limits and replies under random handler mixes --------------------------------

KINDS = ("async", "sync", "async-fail", "sync-fail", "none", "unknown", "async-slow", "sync-slow")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(
    limit=st.integers(1, 5),
    clients=st.lists(
        st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 3)), max_size=20),
        min_size=1,
        max_size=3,
    ),
    batch=st.integers(1, 8),
    max_connections=st.none() | st.integers(1, 2),
)
def test_random_handler_mixes_keep_the_limit_and_answer_everything(
    backend: str,
    limit: int,
    clients: list[list[tuple[str, int]]],
    batch: int,
    max_connections: int | None,
) -> None:
    """Random mixes of sync, async, failing, silent, unknown and slow requests from a few
    clients: handlers in flight never exceed limit per connection, connections never
    exceed max_connections, every request gets exactly its reply, nothing is left open."""
    lock = threading.Lock()  # the counters below are touched by worker threads too
    in_flight: dict[int, int] = {}
    peak: dict[int, int] = {}
    connections = [0, 0]  # open now, peak

    def enter(conn: int) -> None:
        with lock:
            in_flight[conn] = in_flight.get(conn, 0) + 1
            peak[conn] = max(peak.get(conn, 0), in_flight[conn])

    def leave(conn: int) -> None:
        with lock:
            in_flight[conn] -= 1

    router = Router(limit=limit)

    def sync_handler(message: dict[str, Any]) -> dict[str, Any] | None:
        enter(message["conn"])
        try:
            if message["type"].endswith("slow"):
                time.sleep(message["ms"] / 1000)
            if message["type"].endswith("fail"):
                raise ValueError(f"failed {message['id']}")
            return None if message["type"] == "none" else {"type": "ok"}
        finally:
            leave(message["conn"])

    async def async_handler(message: dict[str, Any]) -> dict[str, Any]:
        enter(message["conn"])
        try:
            await anyio.sleep(message["ms"] / 1000 if message["type"].endswith("slow") else 0)
            if message["type"].endswith("fail"):
                raise ValueError(f"failed {message['id']}")
            return {"type": "ok"}
        finally:
            leave(message["conn"])

    for kind in ("sync", "sync-fail", "sync-slow", "none"):
        router.route(kind)(sync_handler)
    for kind in ("async", "async-fail", "async-slow"):
        router.route(kind)(async_handler)

    async def handler(ch: JsonLinesStream) -> None:
        connections[0] += 1
        connections[1] = max(connections[1], connections[0])
        try:
            await router.serve(ch)
        finally:
            connections[0] -= 1

    async def client(conn: int, requests: list[tuple[str, int]], port: int) -> None:
        messages = [
            {"type": kind, "id": i, "conn": conn, "ms": ms} for i, (kind, ms) in enumerate(requests)
        ]
        async with await concur.jsonl.connect("127.0.0.1", port) as ch:
            for start in range(0, len(messages), batch):
                await ch.send_many(messages[start : start + batch])
            await ch.send_eof()
            replies = [reply async for reply in ch]
        got = sorted((r["id"], r["type"], r.get("error", "")) for r in replies)
        want = []
        for i, (kind, _) in enumerate(requests):
            if kind == "none":
                continue
            if kind == "unknown":
                want.append((i, "error", "unknown route 'unknown'"))
            elif kind.endswith("fail"):
                want.append((i, "error", f"ValueError: failed {i}"))
            else:
                want.append((i, "ok", ""))
        assert got == sorted(want)

    async def main() -> None:
        with anyio.fail_after(20):
            serving = concur.jsonl.serve(handler, max_connections=max_connections)
            async with serving as server, anyio.create_task_group() as tg:
                for conn, requests in enumerate(clients):
                    tg.start_soon(client, conn, requests, server.port)
            assert server.statistics().connections_open == 0

    logging.getLogger("concur.jsonl").disabled = True  # the failing handlers are expected
    try:
        anyio.run(main, backend=backend)
    finally:
        logging.getLogger("concur.jsonl").disabled = False
    assert all(count <= limit for count in peak.values()), (peak, limit)
    assert all(count == 0 for count in in_flight.values())
    assert connections[1] <= (max_connections or len(clients))


async def test_on_error_close_with_pipelined_requests_ends_the_stream_cleanly() -> None:
    """With on_error="close" and more requests unread, the client gets the replies sent
    before and then the end of the stream (not a reset)."""
    router = Router(on_error="close", limit=1)

    @router.route("ok")
    async def ok(message: Any) -> dict[str, Any]:
        return {"type": "ok"}

    for _ in range(3):
        async with routed(router) as (ch, _):
            requests = [{"type": "ok", "id": 0}, {"type": "nope", "id": 1}]
            requests += [{"type": "ok", "id": i, "pad": "x" * 1000} for i in range(2, 100)]
            await ch.send_many(requests)
            assert await ch.receive() == {"type": "ok", "id": 0}
            with pytest.raises(anyio.EndOfStream):
                await ch.receive()


async def test_sync_handlers_run_under_the_ambient_limiter() -> None:
    """Sync handlers share the ambient thread limiter: under concur.scope(thread_limit=1)
    at most one runs at once, though the router's limit is 8."""
    router = Router(limit=8)
    lock = threading.Lock()  # guards the counters: handlers run in worker threads
    running = [0, 0]  # now, peak

    @router.route("work")
    def work(message: Any) -> dict[str, Any]:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.002)
        with lock:
            running[0] -= 1
        return {"type": "done"}

    with concur.scope(thread_limit=1):
        async with routed(router) as (ch, _):
            await ch.send_many([{"type": "work", "id": i} for i in range(12)])
            replies = await receive_n(ch, 12)
    assert sorted(r["id"] for r in replies) == list(range(12))
    assert running[1] == 1


async def test_only_sync_handlers_get_the_message_without_handoff() -> None:
    """A sync handler runs with handoff "off" (it owns its message); an async handler and
    a sender keep the ambient policy for their own thread calls."""
    router = Router()
    seen: dict[str, str] = {}

    @router.route("sync")
    def sync_handler(message: Any) -> dict[str, Any]:
        seen["sync"] = concur.current_settings().handoff
        return {"type": "sync"}

    @router.route("async")
    async def async_handler(message: Any) -> dict[str, Any]:
        seen["async"] = concur.current_settings().handoff
        return {"type": "async"}

    with concur.scope(handoff="strict"):
        async with routed(router) as (ch, _):
            await ch.send_many([{"type": "sync", "id": 1}, {"type": "async", "id": 2}])
            await receive_n(ch, 2)
    assert seen == {"sync": "off", "async": "strict"}


async def test_every_does_not_catch_up_missed_ticks() -> None:
    """A sender call that overruns its period skips the missed ticks: the calls after it
    are still a period apart (no burst to catch up)."""
    router = Router()
    starts: list[float] = []
    enough = anyio.Event()

    @router.every(0.05)
    async def slow_first() -> None:
        starts.append(anyio.current_time())
        if len(starts) == 1:
            await anyio.sleep(0.2)  # overruns four ticks
        if len(starts) == 4:
            enough.set()

    async with routed(router):
        await enough.wait()
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps[0] >= 0.2
    # on a fixed schedule a late start shortens the next gap a little; catching up would
    # make the calls after the overrun back to back
    assert all(gap >= 0.01 for gap in gaps[1:]), gaps


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(
    requests=st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 5)), max_size=30),
    cancel_after=st.integers(0, 30),
    grace=st.sampled_from([0.0, 0.01, 5.0]),
    limit=st.integers(1, 4),
)
def test_random_cancellation_of_a_busy_server_leaves_nothing_running(
    backend: str, requests: list[tuple[str, int]], cancel_after: int, grace: float, limit: int
) -> None:
    """Cancelling the block of a busy router server at a random moment: the block ends
    with the cancellation only, every handler (sync ones too) has ended, no connection
    stays open."""
    lock = threading.Lock()  # guards running: sync handlers run in worker threads
    running = [0]
    router = Router(limit=limit)

    def sync_handler(message: dict[str, Any]) -> dict[str, Any]:
        with lock:
            running[0] += 1
        try:
            deadline = time.monotonic() + message["ms"] / 1000
            while time.monotonic() < deadline:
                concur.check_cancelled()
                time.sleep(0.0005)
            return {"type": "ok"}
        finally:
            with lock:
                running[0] -= 1

    async def async_handler(message: dict[str, Any]) -> dict[str, Any]:
        with lock:
            running[0] += 1
        try:
            await anyio.sleep(message["ms"] / 1000)
            return {"type": "ok"}
        finally:
            with lock:
                running[0] -= 1

    for kind in ("sync", "sync-fail", "sync-slow", "none"):
        router.route(kind)(sync_handler)
    for kind in ("async", "async-fail", "async-slow"):
        router.route(kind)(async_handler)

    async def main() -> concur.jsonl.ServerStatistics:
        with anyio.fail_after(20), anyio.CancelScope() as scope:
            async with (
                concur.jsonl.serve(router.serve, grace=grace) as server,
                await concur.jsonl.connect("127.0.0.1", server.port) as ch,
            ):
                await ch.send_many(
                    [{"type": k, "id": i, "ms": ms} for i, (k, ms) in enumerate(requests)]
                )
                replies = sum(kind != "none" for kind, _ in requests)
                for _ in range(min(cancel_after, replies)):
                    await ch.receive()
                scope.cancel()
                await anyio.sleep_forever()
        return server.statistics()

    stats = anyio.run(main, backend=backend)
    assert stats.connections_open == 0
    assert running[0] == 0
