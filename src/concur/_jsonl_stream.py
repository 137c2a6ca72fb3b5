"""JSON Lines framing over any anyio byte stream: :class:`JsonLinesStream` and :func:`connect`.

One frame is one JSON document on one line, ended by ``b"\\n"``. Framing is done here, on
a buffer of our own (not ``BufferedByteReceiveStream``), so that an oversized line is
refused while it arrives, with bounded memory, and the stream stays usable after it.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, cast, final

import anyio
import anyio.abc
import anyio.lowlevel

from . import ConcurError
from ._core.checks import check_function, check_int, check_number

__all__ = [
    "DEFAULT_MAX_FRAME",
    "BadFrame",
    "Counters",
    "FrameTooLarge",
    "JsonLinesStream",
    "connect",
]

DEFAULT_MAX_FRAME: Final = 1_048_576
#: bytes asked of the wrapped stream per read: one line is never held beyond
#: ``max_frame + READ_CHUNK`` bytes
READ_CHUNK: Final = 65_536
_DATA_SHOWN: Final = 200
_BLANK: Final = b" \t\r"
_UTF8_BOM: Final = b"\xef\xbb\xbf"
_SKIP: Final = object()  # what _decode gives for a blank line

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class FrameTooLarge(ConcurError, ValueError):
    """A line was longer than ``max_frame`` bytes (its ``\\n`` not counted).

    Raised by :meth:`JsonLinesStream.receive` as soon as more than ``max_frame`` bytes of
    one line are buffered; the rest of the line is then discarded as it arrives, and the
    next ``receive()`` returns the frame after it.

    Attributes:
        limit: the ``max_frame`` in force.
        line_number: the 1-based number of the offending line in the stream.
    """

    def __init__(self, limit: int, line_number: int) -> None:
        super().__init__(
            f"line {line_number} is longer than max_frame={limit} bytes; it is skipped"
        )
        self.limit = limit
        self.line_number = line_number

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.limit, self.line_number))


class BadFrame(ConcurError, ValueError):
    """A line was not valid UTF-8, or not a JSON document that ``loads`` accepts.

    The next :meth:`JsonLinesStream.receive` returns the next good frame.

    Attributes:
        line_number: the 1-based number of the offending line in the stream (every line
            counts, blank and oversized ones too).
        data: the first 200 bytes of the line, without its newline.
    """

    def __init__(self, line_number: int, data: bytes, reason: str) -> None:
        super().__init__(f"line {line_number} is not a JSON document: {reason}")
        self.line_number = line_number
        self.data = data
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.line_number, self.data, self.reason))


class Counters:
    """Frame counts shared by the connections of one server.

    Only ever changed on the event loop's thread, between two awaits: plain integers
    are enough (no lock).
    """

    __slots__ = ("bad_frames", "connections_open", "connections_total", "frames_in", "frames_out")

    def __init__(self) -> None:
        self.connections_open = 0
        self.connections_total = 0
        self.frames_in = 0
        self.frames_out = 0
        self.bad_frames = 0


@final
class JsonLinesStream(anyio.abc.ObjectStream[Any]):
    """A stream of JSON documents, one per line, over any :class:`anyio.abc.ByteStream`.

    ::

        async with await concur.jsonl.connect("127.0.0.1", port) as ch:
            await ch.send({"type": "ping", "id": 1})
            reply = await ch.receive()

    Sending: :meth:`send` writes one compact JSON document and ``b"\\n"``, and returns only
    when the wrapped stream has accepted the bytes, so a slow reader slows the writer
    (back-pressure); nothing is buffered without bound. Several tasks may send at once:
    frames never interleave.

    Receiving: :meth:`receive` (or ``async for``) returns the next document. Blank lines
    (only spaces, tabs and ``\\r``) are skipped; a last line without its newline is still
    delivered at end of stream. A line longer than *max_frame* raises
    :class:`FrameTooLarge`, one that is not UTF-8 or not JSON :class:`BadFrame`; both leave
    the stream usable. End of stream ends the iteration, and ``receive()`` raises
    :class:`anyio.EndOfStream`.

    The stream owns the wrapped one: closing it closes that too.

    Args:
        stream: the byte stream to wrap (a socket stream, a TLS stream, an in-memory one).
        max_frame: the longest line accepted, in bytes without its ``\\n``.
        dumps: ``dumps(obj) -> str | bytes``; defaults to compact ``json.dumps``
            (``ensure_ascii=False``, ``allow_nan=False``). Its output must not contain a
            newline.
        loads: ``loads(text: str) -> object``, given the decoded line; defaults to
            ``json.loads``. A ``ValueError`` from it becomes :class:`BadFrame`.

    Raises:
        ValueError: ``max_frame < 1``.
        TypeError: *dumps* or *loads* is not callable.
    """

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        dumps: Callable[[Any], str | bytes] | None = None,
        loads: Callable[[str], Any] | None = None,
    ) -> None:
        check_int(max_frame, "max_frame", minimum=1)
        if dumps is not None:
            check_function(dumps, "JsonLinesStream", arg="dumps")
        if loads is not None:
            check_function(loads, "JsonLinesStream", arg="loads")
        self._stream = stream
        self._max_frame = max_frame
        self._dumps = dumps
        self._loads: Callable[[str], Any] = json.loads if loads is None else loads
        # Receive buffer: bytes before _pos are consumed; no newline in [_pos, _scan).
        self._buf = bytearray()
        self._pos = 0
        self._scan = 0
        self._lines = 0  # lines completed (newline seen, or the last one at EOF)
        self._skipping = False  # discarding the rest of an oversized line
        self._eof = False
        self._receiving = False
        self._send_lock = anyio.Lock(fast_acquire=True)
        self._send_broken = False
        self._counters: Counters | None = None  # set by serve()

    @property
    def transport_stream(self) -> anyio.abc.ByteStream:
        """The wrapped byte stream."""
        return self._stream

    @property
    def max_frame(self) -> int:
        """The longest line accepted, in bytes (without its newline)."""
        return self._max_frame

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        stream: Any = self._stream  # anyio types its attributes' keys loosely
        return cast("Mapping[Any, Callable[[], Any]]", stream.extra_attributes)

    # --- sending ---------------------------------------------------------------------------

    def _encode(self, obj: object) -> bytes:
        if self._dumps is None:
            # cannot contain a newline: json escapes it in strings, and the separators
            # are compact
            return _encoder.encode(obj).encode("utf-8")
        out = self._dumps(obj)
        data = out.encode("utf-8") if isinstance(out, str) else out
        if not isinstance(data, bytes | bytearray):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"dumps must return str or bytes, got {type(out).__name__}")
        if b"\n" in data:
            raise ValueError(
                "dumps returned a document containing a newline, which would split the "
                "frame: make it write compact JSON (no indent)"
            )
        return bytes(data)

    async def _write(self, data: bytes, count: int) -> None:
        async with self._send_lock:
            # a cancellation already pending is raised before anything is written
            await anyio.lowlevel.checkpoint_if_cancelled()
            if self._send_broken:
                raise anyio.BrokenResourceError(
                    "an earlier send on this JsonLinesStream was interrupted mid-write"
                )
            try:
                await self._stream.send(data)
            except BaseException:
                # part of a frame may be on the wire: no later frame can follow it
                self._send_broken = True
                raise
            counters = self._counters
            if counters is not None:
                counters.frames_out += count

    async def send(self, item: Any) -> None:
        """Send one JSON document and its newline.

        Returns once the wrapped stream accepted the bytes (back-pressure: it waits while
        the peer does not read).

        Raises:
            TypeError: JSON cannot encode *item* (nothing is written).
            ValueError: *item* holds NaN, an infinity, a cycle, or ``dumps`` returned a
                newline (nothing is written).
            anyio.BrokenResourceError: the connection broke, or an earlier send was
                cancelled mid-write.
            anyio.ClosedResourceError: this stream was closed.

        Cancellation: cancelled while waiting for its turn or before writing, nothing is
        written. Cancelled while the bytes are being written, part of the frame may have
        been sent: the stream is then broken for sending, and later sends raise
        :class:`anyio.BrokenResourceError`.
        """
        await self._write(self._encode(item) + b"\n", 1)

    async def send_many(self, items: Iterable[Any]) -> None:
        """Send several documents with one write to the wrapped stream.

        Everything is encoded first; an empty batch writes nothing.

        Raises:
            TypeError, ValueError: as :meth:`send`, for any item; nothing is written.

        Cancellation: as :meth:`send`.
        """
        frames = [self._encode(item) for item in items]
        if not frames:
            await anyio.lowlevel.checkpoint()
            return
        frames.append(b"")
        await self._write(b"\n".join(frames), len(frames) - 1)

    async def send_eof(self) -> None:
        """Close the sending side (half-close); receiving goes on.

        Cancellation: waits for a send in progress first; cancelled then, nothing is done.
        """
        async with self._send_lock:
            await self._stream.send_eof()

    # --- receiving -------------------------------------------------------------------------

    def _bad(self, line: bytes | bytearray, number: int, reason: str) -> BadFrame:
        counters = self._counters
        if counters is not None:
            counters.bad_frames += 1
        return BadFrame(number, bytes(line[:_DATA_SHOWN]), reason)

    def _decode(self, line: bytearray, number: int) -> Any:
        """The document on *line*, or ``_SKIP`` for a blank line (raises BadFrame)."""
        if not line or (line[0] in _BLANK and not line.strip(_BLANK)):
            return _SKIP
        if line.startswith(_UTF8_BOM):
            raise self._bad(line, number, "it starts with a UTF-8 byte order mark")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._bad(line, number, f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
        try:
            obj = self._loads(text)
        except (ValueError, RecursionError) as exc:
            raise self._bad(line, number, f"{type(exc).__name__}: {exc}") from None
        counters = self._counters
        if counters is not None:
            counters.frames_in += 1
        return obj

    def _too_large(self, number: int) -> FrameTooLarge:
        counters = self._counters
        if counters is not None:
            counters.bad_frames += 1
        return FrameTooLarge(self._max_frame, number)

    def _next_line(self) -> bytearray | None:
        """The next complete line in the buffer (consumed), or ``None``.

        Raises FrameTooLarge once the unfinished line is longer than max_frame.
        """
        buf = self._buf
        if self._skipping:
            end = buf.find(b"\n", self._pos)
            if end < 0:
                buf.clear()
                self._pos = self._scan = 0
                return None
            self._skipping = False
            self._lines += 1
            self._pos = self._scan = end + 1
        pos = self._pos
        end = buf.find(b"\n", self._scan)
        if end < 0:
            if len(buf) - pos > self._max_frame:
                # drop what we hold of it; its newline ends it later
                buf.clear()
                self._pos = self._scan = 0
                self._skipping = True
                raise self._too_large(self._lines + 1)
            self._scan = len(buf)
            return None
        self._lines += 1
        self._pos = self._scan = end + 1
        if end - pos > self._max_frame:
            raise self._too_large(self._lines)
        return buf[pos:end]

    async def _fill(self) -> bool:
        """Read one chunk into the buffer; ``False`` at end of stream."""
        buf = self._buf
        if self._pos:
            del buf[: self._pos]
            self._scan -= self._pos
            self._pos = 0
        try:
            chunk = await self._stream.receive(READ_CHUNK)
        except anyio.EndOfStream:
            self._eof = True
            return False
        buf += chunk
        return True

    async def receive(self) -> Any:
        """Receive the next JSON document.

        Returns at once when a whole line is already buffered (no checkpoint then, as
        :meth:`anyio.streams.buffered.BufferedByteReceiveStream.receive_until`).

        Raises:
            anyio.EndOfStream: the peer closed its side and every line was delivered.
            FrameTooLarge: the next line is longer than ``max_frame``.
            BadFrame: the next line is not UTF-8 or not JSON.
            anyio.BrokenResourceError: the connection was reset.
            anyio.BusyResourceError: another task is receiving from this stream.
            anyio.ClosedResourceError: this stream was closed.

        Cancellation: nothing is lost; the bytes read so far stay buffered for the next
        call.
        """
        if self._receiving:
            raise anyio.BusyResourceError("receiving from")
        self._receiving = True
        try:
            while True:
                line = self._next_line()
                if line is None:
                    if self._eof or not await self._fill():
                        line = self._last_line()
                    else:
                        continue
                obj = self._decode(line, self._lines)
                if obj is not _SKIP:
                    return obj
        finally:
            self._receiving = False

    def _last_line(self) -> bytearray:
        """At end of stream: the final line without a newline, or raise EndOfStream."""
        buf = self._buf
        if self._skipping or self._pos >= len(buf):
            buf.clear()
            self._pos = self._scan = 0
            self._skipping = False
            raise anyio.EndOfStream
        line = buf[self._pos :]
        buf.clear()
        self._pos = self._scan = 0
        self._lines += 1
        return line

    # --- closing ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the stream and the wrapped one; idempotent.

        Cancellation: the stream is closed even so (as anyio's streams do).
        """
        await self._stream.aclose()


async def connect(
    host: str,
    port: int,
    *,
    max_frame: int = DEFAULT_MAX_FRAME,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float | None = None,
) -> JsonLinesStream:
    """Open a TCP connection (TLS with *ssl_context*) and wrap it in a :class:`JsonLinesStream`.

    Args:
        host: the host name or IP address to connect to.
        port: its port.
        max_frame: the longest line accepted from the peer, in bytes.
        ssl_context: when given, TLS is negotiated with it (server name: *host*).
        timeout: seconds bounding the connection set-up (resolution, connect, TLS
            handshake); ``None``: no bound. It does not bound later sends and receives.

    Returns:
        The stream; close it (``async with``) when done.

    Raises:
        TimeoutError: the set-up took longer than *timeout*.
        OSError: the connection could not be made (refused, unreachable).
        ValueError: ``max_frame < 1`` or ``timeout <= 0``.

    Cancellation: a connection half made is closed; nothing is left open.
    """
    check_int(max_frame, "max_frame", minimum=1)
    if timeout is not None:
        check_number(timeout, "timeout", strict=True, unit="seconds")
    with anyio.fail_after(timeout):
        if ssl_context is None:
            stream: anyio.abc.ByteStream = await anyio.connect_tcp(host, port)
        else:
            stream = await anyio.connect_tcp(
                host, port, ssl_context=ssl_context, tls_standard_compatible=False
            )
    return JsonLinesStream(stream, max_frame=max_frame)
