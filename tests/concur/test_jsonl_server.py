"""concur.jsonl.serve over real sockets on 127.0.0.1, asyncio and trio."""

from __future__ import annotations

import json
import logging
import socket
import ssl
from typing import Any

import anyio
import anyio.to_thread
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import concur
from concur.jsonl import JsonLinesStream, ServerStatistics


async def echo(ch: JsonLinesStream) -> None:
    async for message in ch:
        await ch.send(message)


async def test_round_trip_and_statistics() -> None:
    """A client's frames are echoed; statistics count documents, connections, bad frames."""
    async with concur.jsonl.serve(echo, max_frame=100) as server:
        assert server.statistics() == ServerStatistics(0, 0, 0, 0, 0)
        async with await concur.jsonl.connect("127.0.0.1", server.port) as ch:
            await ch.send({"n": 1})
            assert await ch.receive() == {"n": 1}
            await ch.send_many([1, 2, 3])
            assert [await ch.receive() for _ in range(3)] == [1, 2, 3]
            await anyio.wait_all_tasks_blocked()  # the echo's last send() has returned
            stats = server.statistics()
            assert stats.frames_out == 4
            assert stats.frames_in == 4
            assert (stats.connections_open, stats.connections_total) == (1, 1)
    stats = server.statistics()
    assert stats.connections_total == 1
    assert stats.connections_open == 0
    with pytest.raises(AttributeError):
        stats.frames_in = 0  # type: ignore[misc]


async def test_bad_frames_are_counted_and_the_handler_can_go_on() -> None:
    """BadFrame and FrameTooLarge both count in bad_frames, before receive() raises."""
    seen: list[object] = []

    async def tolerant(ch: JsonLinesStream) -> None:
        while True:
            try:
                seen.append(await ch.receive())
            except (concur.jsonl.BadFrame, concur.jsonl.FrameTooLarge) as exc:
                seen.append((type(exc).__name__, server.statistics().bad_frames))
            except anyio.EndOfStream:
                return

    async with concur.jsonl.serve(tolerant, max_frame=50) as server:  # noqa: SIM117
        async with await concur.jsonl.connect("127.0.0.1", server.port) as ch:
            await ch.transport_stream.send(b"{bad\n" + b"x" * 200 + b"\n[5]\n")
            await ch.send_eof()
            with pytest.raises(anyio.EndOfStream):
                await ch.receive()
    assert seen == [("BadFrame", 1), ("FrameTooLarge", 2), [5]]
    assert server.statistics().bad_frames == 2


async def test_200_concurrent_clients() -> None:
    """200 clients connected at once each get their own replies."""
    results: dict[int, list[Any]] = {}

    async def client(i: int, port: int) -> None:
        async with await concur.jsonl.connect("127.0.0.1", port) as ch:
            await ch.send_many([{"client": i, "k": k} for k in range(5)])
            results[i] = [await ch.receive() for _ in range(5)]

    async with concur.jsonl.serve(echo) as server, anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(client, i, server.port)
    assert len(results) == 200
    assert all(results[i] == [{"client": i, "k": k} for k in range(5)] for i in range(200))
    stats = server.statistics()
    assert stats.connections_total == 200
    assert stats.frames_in == stats.frames_out == 1000


async def test_handler_failure_is_isolated_logged_and_closes_its_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler that raises is logged once at ERROR with the peer and traceback; its
    client sees end of stream (no error frame), other clients are untouched."""

    async def handler(ch: JsonLinesStream) -> None:
        async for message in ch:
            if message == "boom":
                raise RuntimeError("handler exploded")
            await ch.send(message)

    caplog.set_level(logging.ERROR, logger="concur.jsonl")
    async with concur.jsonl.serve(handler) as server:  # noqa: SIM117
        async with (
            await concur.jsonl.connect("127.0.0.1", server.port) as good,
            await concur.jsonl.connect("127.0.0.1", server.port) as bad,
        ):
            await good.send(1)
            assert await good.receive() == 1
            peer = bad.extra(anyio.abc.SocketAttribute.local_address)
            await bad.send("boom")
            with pytest.raises(anyio.EndOfStream):
                await bad.receive()
            await good.send(2)
            assert await good.receive() == 2
    records = [r for r in caplog.records if r.name == "concur.jsonl"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], RuntimeError)
    assert str(peer[1]) in records[0].getMessage()


async def test_max_connections_makes_clients_wait_in_arrival_order() -> None:
    """With max_connections=2 the third client waits (keeping what it sent) and is
    served when a handler ends; at most 2 handlers ever run."""
    running = 0
    most = 0
    served: list[Any] = []
    release: dict[Any, anyio.Event] = {}

    async def handler(ch: JsonLinesStream) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            first = await ch.receive()
            served.append(first)
            release[first] = anyio.Event()
            await ch.send("started")
            await release[first].wait()
            await ch.send(first)
        finally:
            running -= 1

    async with concur.jsonl.serve(handler, max_connections=2) as server:
        clients = [await concur.jsonl.connect("127.0.0.1", server.port) for _ in range(4)]
        for i, ch in enumerate(clients):
            await ch.send(i)
        assert await clients[0].receive() == "started"
        assert await clients[1].receive() == "started"
        await anyio.wait_all_tasks_blocked()
        assert served == [0, 1]
        assert server.statistics().connections_open == 2
        release[1].set()
        assert await clients[1].receive() == 1
        assert await clients[2].receive() == "started"  # the next in arrival order
        release[0].set()
        assert await clients[3].receive() == "started"
        release[2].set()
        release[3].set()
        for i in (0, 2, 3):
            assert await clients[i].receive() == i
        for ch in clients:
            await ch.aclose()
    assert served == [0, 1, 2, 3]
    assert most == 2


async def test_shutdown_lets_in_flight_handlers_finish_within_grace() -> None:
    """Leaving the block refuses new clients, then waits for running handlers (within
    grace); they finish and reply."""
    started = anyio.Event()
    finish = anyio.Event()
    finished: list[str] = []

    async def handler(ch: JsonLinesStream) -> None:
        await ch.receive()
        started.set()
        await finish.wait()
        await ch.send("done")
        finished.append("done")

    async with anyio.create_task_group() as tg:
        ch_box: list[JsonLinesStream] = []
        port_box: list[int] = []

        async def run_server() -> None:
            async with concur.jsonl.serve(handler, grace=10) as server:
                port_box.append(server.port)
                ch = await concur.jsonl.connect("127.0.0.1", server.port)
                ch_box.append(ch)
                await ch.send("go")
                await started.wait()
            # the block is left while the handler waits: it finished within grace
            assert finished == ["done"]

        tg.start_soon(run_server)
        await started.wait()
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(OSError):  # the listener is closed first
            await concur.jsonl.connect("127.0.0.1", port_box[0])
        finish.set()
    async with ch_box[0] as ch:
        assert await ch.receive() == "done"


async def test_shutdown_cancels_handlers_after_grace() -> None:
    """A handler still running after grace is cancelled; its client sees end of stream."""
    cancelled: list[bool] = []

    async def stuck(ch: JsonLinesStream) -> None:
        await ch.receive()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    before = anyio.current_time()
    async with concur.jsonl.serve(stuck, grace=0.1) as server:
        ch = await concur.jsonl.connect("127.0.0.1", server.port)
        await ch.send(1)
        await anyio.wait_all_tasks_blocked()
        before = anyio.current_time()
    assert anyio.current_time() - before >= 0.1
    assert cancelled == [True]
    async with ch:
        with pytest.raises(anyio.EndOfStream):
            await ch.receive()


async def test_exception_from_block_propagates_unwrapped_after_shutdown() -> None:
    """An exception raised in the block propagates as it is, after the same shutdown."""
    cancelled: list[bool] = []

    async def stuck(ch: JsonLinesStream) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.append(True)

    clients: list[JsonLinesStream] = []

    async def block() -> None:
        async with concur.jsonl.serve(stuck, grace=0) as server:
            clients.append(await concur.jsonl.connect("127.0.0.1", server.port))
            await anyio.wait_all_tasks_blocked()
            raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        await block()
    assert cancelled == [True]
    await clients[0].aclose()


async def test_cancellation_of_block_propagates_after_shutdown() -> None:
    """A cancelled block still shuts down (handlers get grace) and the cancellation
    reaches its scope."""
    finished: list[bool] = []

    async def slow(ch: JsonLinesStream) -> None:
        await ch.receive()
        await anyio.sleep(0.05)
        finished.append(True)

    with anyio.CancelScope() as scope:
        async with concur.jsonl.serve(slow, grace=5) as server:
            ch = await concur.jsonl.connect("127.0.0.1", server.port)
            await ch.send(1)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert finished == [True]
    await ch.aclose()


async def measure_until_blocked(send: Any, size: int) -> tuple[int, int]:
    accepted = 0

    async def flood() -> None:
        nonlocal accepted
        while True:
            await send()
            accepted += size

    async with anyio.create_task_group() as tg:
        tg.start_soon(flood)
        await anyio.wait_all_tasks_blocked()
        first = accepted
        await anyio.wait_all_tasks_blocked()
        second = accepted
        tg.cancel_scope.cancel()
    return first, second


FRAME = {"pad": "p" * 65536}
FRAME_SIZE = len(json.dumps(FRAME, separators=(",", ":"))) + 1


async def test_handler_not_reading_makes_client_send_wait() -> None:
    """A handler that reads nothing makes its client's send() wait: the bytes accepted
    stop growing, far below 64 MiB (no read-ahead on the server side)."""
    stop = anyio.Event()

    async def idle(ch: JsonLinesStream) -> None:
        await stop.wait()

    async with concur.jsonl.serve(idle, grace=0) as server:
        async with await concur.jsonl.connect("127.0.0.1", server.port) as ch:
            first, second = await measure_until_blocked(lambda: ch.send(FRAME), FRAME_SIZE)
        stop.set()
    assert first == second
    assert 0 < first < 64 * 2**20


async def test_client_not_reading_makes_handler_send_wait() -> None:
    """A client that reads nothing makes the handler's send() wait, bounded."""
    box: list[tuple[int, int]] = []

    async def flooder(ch: JsonLinesStream) -> None:
        box.append(await measure_until_blocked(lambda: ch.send(FRAME), FRAME_SIZE))

    async with concur.jsonl.serve(flooder) as server:  # noqa: SIM117
        async with await concur.jsonl.connect("127.0.0.1", server.port):
            while not box:
                await anyio.wait_all_tasks_blocked()
                await anyio.sleep(0)
    first, second = box[0]
    assert first == second
    assert 0 < first < 64 * 2**20


async def test_client_reset_reaches_the_handler_as_broken_resource() -> None:
    """A client that resets its connection makes the handler's receive raise
    BrokenResourceError (logged like any handler failure if not caught)."""
    import struct

    seen: list[type[BaseException]] = []
    done = anyio.Event()

    async def handler(ch: JsonLinesStream) -> None:
        try:
            async for message in ch:
                await ch.send(message)
        except anyio.BrokenResourceError as exc:
            seen.append(type(exc))
        finally:
            done.set()

    async with concur.jsonl.serve(handler) as server:

        def client(port: int) -> bytes:  # blocking: runs in a thread
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"1\n")
                echoed = sock.recv(10)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return echoed

        assert await anyio.to_thread.run_sync(client, server.port) == b"1\n"
        await done.wait()
    assert seen == [anyio.BrokenResourceError]


async def test_bad_arguments() -> None:
    """A sync handler is TypeError; max_frame, max_connections and grace out of range
    are ValueError naming the argument, at the call."""

    def sync_handler(ch: JsonLinesStream) -> None: ...

    with pytest.raises(TypeError, match="handler"):
        concur.jsonl.serve(sync_handler)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_frame"):
        concur.jsonl.serve(echo, max_frame=0)
    with pytest.raises(ValueError, match="max_connections"):
        concur.jsonl.serve(echo, max_connections=0)
    with pytest.raises(ValueError, match="grace"):
        concur.jsonl.serve(echo, grace=-1)
    with pytest.raises(ValueError, match="port"):
        concur.jsonl.serve(echo, port=70000)
    with pytest.raises(TypeError, match="host"):
        concur.jsonl.serve(echo, host=None)  # type: ignore[arg-type]


def tls_contexts(tmp_path: Any) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh self-signed certificate for 127.0.0.1, and a client
    context that trusts it."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file = tmp_path / "cert.pem"
    key_file = tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.create_default_context(cafile=str(cert_file))
    return server_context, client_context


async def test_tls_round_trip(tmp_path: Any) -> None:
    """serve(ssl_context=...) and connect(ssl_context=...) speak JSON Lines over TLS."""
    server_context, client_context = tls_contexts(tmp_path)
    async with (
        concur.jsonl.serve(echo, ssl_context=server_context) as server,
        await concur.jsonl.connect(
            "127.0.0.1", server.port, ssl_context=client_context, timeout=10
        ) as ch,
    ):
        await ch.send_many([{"secure": True}, [1, 2]])
        assert await receive_two(ch) == [{"secure": True}, [1, 2]]


async def test_tls_handshake_failure_is_logged_and_the_server_goes_on(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that does not speak TLS is logged at WARNING; the next client is served."""
    server_context, client_context = tls_contexts(tmp_path)
    async with concur.jsonl.serve(echo, ssl_context=server_context) as server:
        async with await concur.jsonl.connect("127.0.0.1", server.port) as plain:
            await plain.send("not a handshake")
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await plain.receive()
        async with await concur.jsonl.connect(
            "127.0.0.1", server.port, ssl_context=client_context
        ) as ch:
            await ch.send(1)
            assert await ch.receive() == 1
    assert any(r.levelno == logging.WARNING for r in caplog.records if r.name == "concur.jsonl")


async def receive_two(ch: JsonLinesStream) -> list[Any]:
    return [await ch.receive(), await ch.receive()]


async def test_failing_handler_with_unread_frames_still_ends_the_stream_cleanly() -> None:
    """A handler that fails while its client's later frames are unread: the client still
    reads every reply sent before and then the end of the stream (a FIN, not a reset)."""

    async def handler(ch: JsonLinesStream) -> None:
        await ch.send(await ch.receive())
        raise RuntimeError("after the first frame")

    logging.getLogger("concur.jsonl").disabled = True
    try:
        async with concur.jsonl.serve(handler) as server:
            for _ in range(5):
                async with await concur.jsonl.connect("127.0.0.1", server.port) as ch:
                    await ch.send_many([{"n": i, "pad": "x" * 1000} for i in range(300)])
                    assert (await ch.receive())["n"] == 0
                    with pytest.raises(anyio.EndOfStream):
                        await ch.receive()
    finally:
        logging.getLogger("concur.jsonl").disabled = False


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(
    sizes=st.lists(st.integers(0, 200_000), min_size=1, max_size=40),
    stalls=st.lists(st.integers(0, 39), max_size=5),
)
def test_random_frames_through_a_stalling_handler_arrive_whole_and_in_order(
    backend: str, sizes: list[int], stalls: list[int]
) -> None:
    """Frames of random sizes sent while the handler stalls now and then (the accepted
    stream pauses and resumes reading) all arrive, whole and in order."""

    async def main() -> list[int]:
        got: list[int] = []

        async def handler(ch: JsonLinesStream) -> None:
            async for message in ch:
                got.append(message["i"])
                assert message["pad"] == "p" * sizes[message["i"]]
                if message["i"] in stalls:
                    await anyio.wait_all_tasks_blocked()  # the client is blocked sending
            await ch.send("done")

        with anyio.fail_after(20):
            async with (
                concur.jsonl.serve(handler) as server,
                await concur.jsonl.connect("127.0.0.1", server.port) as ch,
            ):
                for i, size in enumerate(sizes):
                    await ch.send({"i": i, "pad": "p" * size})
                await ch.send_eof()
                assert await ch.receive() == "done"
        return got

    assert anyio.run(main, backend=backend) == list(range(len(sizes)))
