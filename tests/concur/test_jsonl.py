"""concur.jsonl.JsonLinesStream and connect over real sockets on 127.0.0.1, asyncio and trio."""

from __future__ import annotations

import itertools
import json
import math
import socket
import struct
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import concur
from concur.jsonl import BadFrame, FrameTooLarge, JsonLinesStream

# --- helpers ---------------------------------------------------------------------------------


async def accept(listener: anyio.abc.Listener[anyio.abc.SocketStream]) -> anyio.abc.SocketStream:
    """The next connection of a listener made by ``anyio.create_tcp_listener``."""
    inner = listener.listeners[0]  # type: ignore[attr-defined]
    stream: anyio.abc.SocketStream = await inner.accept()
    return stream


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[tuple[anyio.abc.SocketStream, anyio.abc.SocketStream]]:
    """A connected pair of anyio socket streams on 127.0.0.1 (client, server)."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        client = await anyio.connect_tcp("127.0.0.1", port)
        server = await accept(listener)
        async with client, server:
            yield client, server


@asynccontextmanager
async def raw_to_jsonl(
    max_frame: int = 1_048_576, **kwargs: Any
) -> AsyncIterator[tuple[anyio.abc.SocketStream, JsonLinesStream]]:
    """Raw bytes written on the first stream arrive at the JsonLinesStream."""
    async with tcp_pair() as (client, server):
        yield client, JsonLinesStream(server, max_frame=max_frame, **kwargs)


class CountingStream(anyio.abc.ByteStream):
    """A real byte stream that counts the calls to its ``send()``."""

    def __init__(self, inner: anyio.abc.ByteStream) -> None:
        self.inner = inner
        self.sends = 0

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        self.sends += 1
        await self.inner.send(item)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def read_all(stream: anyio.abc.ByteReceiveStream) -> bytes:
    data = b""
    try:
        while True:
            data += await stream.receive()
    except anyio.EndOfStream:
        return data


# --- round trips -----------------------------------------------------------------------------


DOCUMENTS: list[Any] = [
    {"type": "ping", "id": 1},
    [1, 2.5, None, True, False],
    "a string with a \n newline and unicode é ☃ 𝄞",
    0,
    {"nested": {"deep": [{"x": "y"}] * 3}, "empty": {}},
    None,
]


async def test_round_trip_both_ways() -> None:
    """Documents of every JSON kind arrive equal, in order, in both directions."""
    async with tcp_pair() as (a, b):
        left, right = JsonLinesStream(a), JsonLinesStream(b)
        for doc in DOCUMENTS:
            await left.send(doc)
        assert [await right.receive() for _ in DOCUMENTS] == DOCUMENTS
        await right.send_many(DOCUMENTS)
        assert [await left.receive() for _ in DOCUMENTS] == DOCUMENTS


async def test_wire_format_is_compact_utf8_with_newline() -> None:
    """The default encoding is compact JSON in UTF-8 (not ASCII escapes) ended by a newline."""
    async with tcp_pair() as (a, b):
        async with JsonLinesStream(a) as ch:
            await ch.send({"a": [1, 2], "é": "☃"})
            await ch.send_many([1, {"b": None}])
        assert await read_all(b) == '{"a":[1,2],"é":"☃"}\n1\n{"b":null}\n'.encode()


async def test_iteration_ends_at_end_of_stream_and_receive_raises() -> None:
    """``async for`` stops at end of stream; ``receive()`` then raises EndOfStream."""
    async with raw_to_jsonl() as (raw, ch):
        await raw.send(b'{"n":1}\n{"n":2}\n')
        await raw.send_eof()
        assert [doc async for doc in ch] == [{"n": 1}, {"n": 2}]
        with pytest.raises(anyio.EndOfStream):
            await ch.receive()


async def test_connect_round_trip_and_timeout_bounds_only_setup() -> None:
    """``connect`` gives a working stream; its timeout does not bound later receives."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with await concur.jsonl.connect("127.0.0.1", port, timeout=0.05) as ch:
            server = await accept(listener)
            async with JsonLinesStream(server) as peer:
                await anyio.sleep(0.1)  # longer than the timeout: no TimeoutError now
                await peer.send({"late": True})
                assert await ch.receive() == {"late": True}


async def test_connect_refused_raises_oserror() -> None:
    """Connecting where nothing listens raises OSError."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(OSError):
            await concur.jsonl.connect("127.0.0.1", port, timeout=5)


# --- frames in -------------------------------------------------------------------------------


async def test_exactly_max_frame_is_accepted_one_more_raises() -> None:
    """A line of exactly max_frame bytes is a frame; one byte more is FrameTooLarge."""
    async with raw_to_jsonl(max_frame=10) as (raw, ch):
        exact = b'"' + b"x" * 8 + b'"'  # 10 bytes
        await raw.send(exact + b"\n" + b'"' + b"x" * 9 + b'"\n' + b"[1]\n")
        assert await ch.receive() == "x" * 8
        with pytest.raises(FrameTooLarge) as info:
            await ch.receive()
        assert info.value.limit == 10
        assert info.value.line_number == 2
        assert isinstance(info.value, concur.ConcurError)
        assert isinstance(info.value, ValueError)
        assert await ch.receive() == [1]


async def test_too_large_is_raised_before_the_newline_and_the_rest_is_skipped() -> None:
    """FrameTooLarge comes as soon as max_frame is passed; the line's rest is discarded
    across later receives, holding at most max_frame + 64 KiB, and the next frame follows."""
    max_frame = 1000
    async with raw_to_jsonl(max_frame=max_frame) as (raw, ch):
        await raw.send(b"[1]\n" + b"y" * (max_frame + 1))  # no newline yet
        assert await ch.receive() == [1]
        with pytest.raises(FrameTooLarge) as info:
            await ch.receive()
        assert info.value.line_number == 2
        held: list[int] = []

        async def writer() -> None:
            for _ in range(40):  # 40 x 64 KiB more of the same line
                await raw.send(b"z" * 65536)
            await raw.send(b"\n\n{bad\n" + b'{"after":true}\n')

        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            with pytest.raises(BadFrame) as bad:
                await ch.receive()
            held.append(len(ch._buf))  # pyright: ignore[reportPrivateUsage]
        assert bad.value.line_number == 4  # the oversized line 2, a blank line 3
        assert await ch.receive() == {"after": True}
        assert max(held) <= max_frame + 65536


async def test_buffered_bytes_of_one_line_stay_bounded_while_it_arrives() -> None:
    """While a 4 MiB line arrives in small writes, the reader never holds more than
    max_frame + 64 KiB of it."""
    max_frame = 4096
    async with raw_to_jsonl(max_frame=max_frame) as (raw, ch):
        sizes: list[int] = []
        done = anyio.Event()

        async def writer() -> None:
            for _ in range(64):
                await raw.send(b"q" * 65536)
            await raw.send(b"\n7\n")
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            with pytest.raises(FrameTooLarge):
                await ch.receive()
            sizes.append(len(ch._buf))  # pyright: ignore[reportPrivateUsage]
            assert await ch.receive() == 7
            sizes.append(len(ch._buf))  # pyright: ignore[reportPrivateUsage]
        assert max(sizes) <= max_frame + 65536


async def test_too_large_line_arriving_whole_is_skipped() -> None:
    """An oversized line that arrives with its newline in one chunk is refused and skipped."""
    async with raw_to_jsonl(max_frame=5) as (raw, ch):
        await raw.send(b'"abcdefgh"\n"ok"\n')
        with pytest.raises(FrameTooLarge) as info:
            await ch.receive()
        assert info.value.line_number == 1
        assert await ch.receive() == "ok"


async def test_malformed_json_is_bad_frame_with_line_number_and_data() -> None:
    """A line that is not JSON raises BadFrame (line number, first 200 bytes); the next
    receive returns the next good frame."""
    long_bad = b"{" + b"x" * 300
    async with raw_to_jsonl() as (raw, ch):
        await raw.send(b'{"a":1}\n{"a":\n' + long_bad + b'\n{"a":2}\n')
        assert await ch.receive() == {"a": 1}
        with pytest.raises(BadFrame) as info:
            await ch.receive()
        assert info.value.line_number == 2
        assert info.value.data == b'{"a":'
        assert isinstance(info.value, concur.ConcurError)
        assert isinstance(info.value, ValueError)
        with pytest.raises(BadFrame) as info:
            await ch.receive()
        assert info.value.line_number == 3
        assert info.value.data == long_bad[:200]
        assert await ch.receive() == {"a": 2}


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"\xff\xfe" + '{"a":1}'.encode("utf-16-le"), id="utf-16-le-bom"),
        pytest.param('{"a":1}'.encode("utf-32"), id="utf-32-bom"),
        pytest.param(b'\xef\xbb\xbf{"a":1}', id="utf-8-bom"),
        pytest.param(b'{"a":"\xc3\x28"}', id="invalid-utf-8"),
        pytest.param(b'"\xed\xa0\x80"', id="utf-8-surrogate"),
    ],
)
async def test_non_utf8_lines_are_bad_frames(line: bytes) -> None:
    """Lines in UTF-16/32, with a UTF-8 BOM, or with invalid UTF-8 are BadFrame."""
    assert b"\n" not in line
    async with raw_to_jsonl() as (raw, ch):
        await raw.send(line + b"\n[true]\n")
        with pytest.raises(BadFrame) as info:
            await ch.receive()
        assert info.value.line_number == 1
        assert info.value.data == line[:200]
        assert await ch.receive() == [True]


async def test_blank_lines_are_skipped_but_counted() -> None:
    """Empty lines and lines of spaces, tabs and CR are skipped; they count as lines."""
    async with raw_to_jsonl() as (raw, ch):
        await raw.send(b'\n  \n\t\r\n\r\n{"x":1}\r\n\nnope\n')
        assert await ch.receive() == {"x": 1}  # a CR before the newline is whitespace
        with pytest.raises(BadFrame) as info:
            await ch.receive()
        assert info.value.line_number == 7


async def test_unterminated_last_line_is_delivered_at_eof() -> None:
    """A final line without a newline is still delivered at end of stream."""
    async with raw_to_jsonl() as (raw, ch):
        await raw.send(b'1\n{"last":true}')
        await raw.send_eof()
        assert [doc async for doc in ch] == [1, {"last": True}]


async def test_unterminated_bad_last_line_and_blank_tail() -> None:
    """A bad unterminated last line is BadFrame; a blank one is skipped; then EndOfStream."""
    async with raw_to_jsonl() as (raw, ch):
        await raw.send(b"1\n{oops")
        await raw.send_eof()
        assert await ch.receive() == 1
        with pytest.raises(BadFrame) as info:
            await ch.receive()
        assert info.value.line_number == 2
        with pytest.raises(anyio.EndOfStream):
            await ch.receive()
    async with raw_to_jsonl() as (raw, ch):
        await raw.send(b"1\n \t")
        await raw.send_eof()
        assert [doc async for doc in ch] == [1]


async def test_deeply_nested_line_is_bad_frame() -> None:
    """A line nested too deep for the decoder (RecursionError) is a BadFrame."""
    async with raw_to_jsonl() as (raw, ch):
        await raw.send(b"[" * 100_000 + b"\n2\n")
        with pytest.raises(BadFrame):
            await ch.receive()
        assert await ch.receive() == 2


async def test_custom_loads_gets_text_and_its_value_error_is_bad_frame() -> None:
    """``loads`` receives the decoded str; its ValueError becomes BadFrame."""
    seen: list[object] = []

    def loads(text: str) -> object:
        seen.append(text)
        if text == "bad":
            raise ValueError("no")
        return text.upper()

    async with raw_to_jsonl(loads=loads) as (raw, ch):
        await raw.send("é\nbad\nok\n".encode())
        assert await ch.receive() == "É"
        with pytest.raises(BadFrame):
            await ch.receive()
        assert await ch.receive() == "OK"
    assert seen == ["é", "bad", "ok"]


# --- frames out ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error"),
    [
        pytest.param({1, 2}, TypeError, id="set"),
        pytest.param({"x": object()}, TypeError, id="object"),
        pytest.param(math.nan, ValueError, id="nan"),
        pytest.param([math.inf], ValueError, id="infinity"),
        pytest.param("lone \ud800 surrogate", ValueError, id="surrogate"),
    ],
)
async def test_unencodable_values_raise_before_anything_is_written(
    value: object, error: type[Exception]
) -> None:
    """What JSON cannot encode raises TypeError/ValueError and writes nothing."""
    async with tcp_pair() as (a, b):
        counting = CountingStream(a)
        ch = JsonLinesStream(counting)
        with pytest.raises(error):
            await ch.send(value)
        with pytest.raises(error):
            await ch.send_many([1, value])
        assert counting.sends == 0
        await ch.send("fine")
        await ch.aclose()
        assert await read_all(b) == b'"fine"\n'


async def test_cycle_raises_value_error() -> None:
    """A self-containing list raises ValueError before anything is written."""
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    async with tcp_pair() as (a, _):
        with pytest.raises(ValueError, match="ircular"):
            await JsonLinesStream(a).send(cyclic)


async def test_custom_dumps_str_or_bytes_and_newline_refused() -> None:
    """``dumps`` may return str or bytes; output with a newline raises ValueError, unwritten."""

    def dumps(obj: Any) -> str | bytes:
        if obj == "bytes":
            return b'"B"'
        if obj == "indent":
            return json.dumps([obj], indent=1)
        return json.dumps(obj)

    async with tcp_pair() as (a, b):
        counting = CountingStream(a)
        ch = JsonLinesStream(counting, dumps=dumps)
        await ch.send({"k": 1})
        await ch.send("bytes")
        with pytest.raises(ValueError, match="newline"):
            await ch.send("indent")
        with pytest.raises(ValueError, match="newline"):
            await ch.send_many(["x", "indent"])
        assert counting.sends == 2
        await ch.aclose()
        assert await read_all(b) == b'{"k": 1}\n"B"\n'


async def test_send_many_is_one_write_and_empty_batch_writes_nothing() -> None:
    """``send_many`` calls the wrapped stream's send exactly once; an empty batch never."""
    async with tcp_pair() as (a, b):
        counting = CountingStream(a)
        ch = JsonLinesStream(counting)
        await ch.send_many([{"i": i} for i in range(100)])
        assert counting.sends == 1
        await ch.send_many([])
        await ch.send_many(iter(()))
        assert counting.sends == 1
        await ch.aclose()
        lines = (await read_all(b)).splitlines()
        assert [json.loads(line) for line in lines] == [{"i": i} for i in range(100)]


async def test_concurrent_senders_never_interleave() -> None:
    """Frames sent from many tasks at once arrive whole, none lost."""
    big = "x" * 200_000  # several socket writes per frame
    async with tcp_pair() as (a, b):
        sender, receiver = JsonLinesStream(a), JsonLinesStream(b)
        received: list[Any] = []

        async def send(i: int) -> None:
            for j in range(5):
                if j % 2:
                    await sender.send_many([{"i": i, "j": j, "pad": big}, {"i": i, "j": -j}])
                else:
                    await sender.send({"i": i, "j": j, "pad": big})

        async def receive() -> None:
            async for doc in receiver:
                received.append(doc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(receive)
            async with anyio.create_task_group() as senders:
                for i in range(20):
                    senders.start_soon(send, i)
            await sender.send_eof()
        assert len(received) == 20 * 7
        assert all(doc.get("pad", big) == big for doc in received)


async def test_concurrent_receive_is_busy() -> None:
    """A second receive while one waits raises BusyResourceError."""
    async with raw_to_jsonl() as (raw, ch), anyio.create_task_group() as tg:
        tg.start_soon(ch.receive)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(anyio.BusyResourceError):
            await ch.receive()
        await raw.send(b"1\n")


async def test_receive_cancelled_loses_nothing() -> None:
    """A receive cancelled while half a line is buffered keeps it for the next call."""
    async with raw_to_jsonl() as (raw, ch):
        await raw.send(b'{"half":')
        with anyio.move_on_after(0.05):
            await ch.receive()
        await raw.send(b"true}\n")
        assert await ch.receive() == {"half": True}


# --- back-pressure and broken streams --------------------------------------------------------


async def measure_until_blocked(ch: JsonLinesStream, frame: Any) -> tuple[int, int]:
    """Send *frame* in a loop until the peer's not reading stops it; returns the bytes
    accepted after two successive ``wait_all_tasks_blocked()``."""
    size = len(json.dumps(frame, separators=(",", ":"))) + 1
    accepted = 0

    async def flood() -> None:
        nonlocal accepted
        while True:
            await ch.send(frame)
            accepted += size

    async with anyio.create_task_group() as tg:
        tg.start_soon(flood)
        await anyio.wait_all_tasks_blocked()
        first = accepted
        await anyio.wait_all_tasks_blocked()
        second = accepted
        tg.cancel_scope.cancel()
    return first, second


async def test_slow_reader_makes_send_wait() -> None:
    """While the connecting side reads nothing, the bytes accepted by the other side's
    send() stop growing, far below 64 MiB."""
    async with tcp_pair() as (_, b):
        first, second = await measure_until_blocked(JsonLinesStream(b), {"pad": "p" * 65536})
    assert first == second
    assert 0 < first < 64 * 2**20


async def test_send_cancelled_mid_write_breaks_the_stream() -> None:
    """A send cancelled while writing leaves the stream broken: later sends raise
    BrokenResourceError."""
    async with tcp_pair() as (_, b):
        ch = JsonLinesStream(b)  # the connecting side a does not read ahead
        with anyio.move_on_after(0.2) as scope:
            await ch.send("z" * (24 * 2**20))  # more than the kernel buffers take
        assert scope.cancelled_caught
        with pytest.raises(anyio.BrokenResourceError):
            await ch.send(1)


async def test_send_cancelled_before_writing_leaves_stream_usable() -> None:
    """A send cancelled before its turn (another task is writing) writes nothing."""
    async with tcp_pair() as (a, b):
        ch, peer = JsonLinesStream(a), JsonLinesStream(b)
        async with anyio.create_task_group() as tg:
            tg.start_soon(ch.send, "first")
            with anyio.CancelScope() as scope:
                scope.cancel()
                await ch.send("never")
        await ch.send("second")
        assert [await peer.receive(), await peer.receive()] == ["first", "second"]


async def drain(ch: JsonLinesStream) -> None:
    async for _ in ch:
        pass


def reset(sock: socket.socket) -> None:
    """Close *sock* with a TCP reset (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def test_connection_reset_raises_broken_resource_from_receive_and_iteration() -> None:
    """A reset by the peer raises BrokenResourceError from receive() and from iteration."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        for use_iteration in (False, True):
            peer = socket.create_connection(("127.0.0.1", port))
            async with JsonLinesStream(await accept(listener)) as ch:
                peer.sendall(b"1\n")
                assert await ch.receive() == 1
                reset(peer)
                with pytest.raises(anyio.BrokenResourceError):
                    await (drain(ch) if use_iteration else ch.receive())


# --- bad arguments ---------------------------------------------------------------------------


async def test_bad_arguments() -> None:
    """max_frame < 1, non-callable dumps/loads and timeout <= 0 are refused at the call."""
    async with tcp_pair() as (a, _):
        with pytest.raises(ValueError, match="max_frame"):
            JsonLinesStream(a, max_frame=0)
        with pytest.raises(TypeError, match="max_frame"):
            JsonLinesStream(a, max_frame=1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="dumps"):
            JsonLinesStream(a, dumps="json")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="loads"):
            JsonLinesStream(a, loads=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_frame"):
        await concur.jsonl.connect("127.0.0.1", 1, max_frame=0)
    with pytest.raises(ValueError, match="timeout"):
        await concur.jsonl.connect("127.0.0.1", 1, timeout=0)


def test_errors_pickle_and_carry_their_fields() -> None:
    """FrameTooLarge and BadFrame keep their fields through pickling."""
    import pickle

    big = pickle.loads(pickle.dumps(FrameTooLarge(10, 3)))
    assert (big.limit, big.line_number) == (10, 3)
    bad = pickle.loads(pickle.dumps(BadFrame(4, b"xx", "why")))
    assert (bad.line_number, bad.data) == (4, b"xx")
    assert "line 4" in str(bad)


# --- randomized: the framing against a reference model -----------------------------------------


class ChunkStream(anyio.abc.ByteStream):
    """A real in-memory byte stream that delivers given bytes in given chunks (at most
    ``max_bytes`` each), then the end of the stream."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = [chunk for chunk in chunks if chunk]
        self.largest_read = 0

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await anyio.lowlevel.checkpoint()
        if not self.chunks:
            raise anyio.EndOfStream
        chunk = self.chunks.pop(0)
        if len(chunk) > max_bytes:
            self.chunks.insert(0, chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        self.largest_read = max(self.largest_read, len(chunk))
        return chunk

    async def send(self, item: bytes) -> None:
        raise anyio.BrokenResourceError

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def reference(lines: list[bytes], max_frame: int) -> list[tuple[str, object]]:
    """What receive() must give for *lines* (without their newlines), by the frame rules."""
    out: list[tuple[str, object]] = []
    for number, line in enumerate(lines, 1):
        if len(line) > max_frame:
            out.append(("FrameTooLarge", number))
        elif not line.strip(b" \t\r"):
            continue
        elif line.startswith(b"\xef\xbb\xbf"):
            out.append(("BadFrame", number))
        else:
            try:
                out.append(("doc", repr(json.loads(line.decode("utf-8")))))
            except (ValueError, RecursionError):
                out.append(("BadFrame", number))
    return out


async def receive_everything(ch: JsonLinesStream, bound: int) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    while True:
        try:
            out.append(("doc", repr(await ch.receive())))
        except anyio.EndOfStream:
            return out
        except FrameTooLarge as exc:
            out.append(("FrameTooLarge", exc.line_number))
        except BadFrame as exc:
            out.append(("BadFrame", exc.line_number))
        held = len(ch._buf) - ch._pos  # pyright: ignore[reportPrivateUsage]
        assert held <= bound, (held, bound)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
lines_strategy = st.lists(
    st.one_of(
        json_values.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
        st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
        st.text(" \t\r", max_size=4).map(str.encode),
        st.integers(1, 400).map(lambda n: b'"' + b"w" * n + b'"'),
        st.sampled_from([b"\xef\xbb\xbf1", b"\xff\xfe1\x00", b"[" * 3000, b"{}", b"nul"]),
    ),
    max_size=25,
)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    lines=lines_strategy,
    max_frame=st.integers(1, 300),
    terminated=st.booleans(),
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
)
def test_random_lines_in_random_chunks_follow_the_frame_rules(
    backend: str, lines: list[bytes], max_frame: int, terminated: bool, cuts: list[int]
) -> None:
    """Random good, bad, blank and oversized lines, cut into random chunks, give exactly
    what the frame rules say, holding at most max_frame + one chunk of any line."""
    data = b"\n".join(lines) + (b"\n" if terminated and lines else b"")
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]

    async def main() -> list[tuple[str, object]]:
        source = ChunkStream(chunks)
        ch = JsonLinesStream(source, max_frame=max_frame)
        with anyio.fail_after(10):
            got = await receive_everything(ch, max_frame + 65536)
        return got

    assert anyio.run(main, backend=backend) == reference(lines, max_frame)
