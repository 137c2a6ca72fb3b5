"""``concur.jsonl.serve``: a JSON Lines TCP server with bounded connections and a graceful exit.

Accepted connections are not anyio's asyncio socket streams: those read ahead into
memory without bound until a ``receive()`` has to wait, which would defeat the
back-pressure a handler that does not read should exert on its client. On asyncio each
connection is the stream of ``_jsonl_asyncio`` instead (an asyncio protocol whose
read-ahead is bounded). On trio, anyio's stream (``SocketStream.from_socket``) already
reads only when asked and is used as it is. The listening sockets are anyio's
(``create_tcp_listener``), accepted from directly, so that ``max_connections`` can stop
accepting.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final, final

import anyio
import anyio.abc
import anyio.lowlevel
import attrs
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSStream

import concur

from . import _jsonl_asyncio
from ._core.checks import check_async_function, check_int, check_number, fn_name
from ._jsonl_stream import DEFAULT_MAX_FRAME, Counters, JsonLinesStream

__all__ = ["Server", "ServerStatistics", "serve"]

logger = logging.getLogger("concur.jsonl")

_BACKLOG: Final = 4096
_LINGER: Final = 0.25  # seconds a closing connection waits for its peer to close too
#: accept() errors that mean "out of resources now", not "the listener is broken"
_TRANSIENT_ACCEPT_ERRORS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED}
)


@final
@attrs.frozen
class ServerStatistics:
    """What a :func:`serve` server has done so far.

    Attributes:
        connections_open: connections accepted and not yet closed (their handler runs,
            or they are closing).
        connections_total: connections accepted since the server started.
        frames_in: documents received by handlers (good frames only).
        frames_out: documents sent by handlers (``send_many`` of n counts n).
        bad_frames: lines refused, :class:`~concur.jsonl.BadFrame` and
            :class:`~concur.jsonl.FrameTooLarge` alike.
    """

    connections_open: int
    connections_total: int
    frames_in: int
    frames_out: int
    bad_frames: int


@final
class Server:
    """A running :func:`serve` server (what ``async with serve(...) as server`` gives)."""

    __slots__ = ("_counters", "_ports")

    def __init__(self, counters: Counters, ports: list[int]) -> None:
        self._counters = counters
        self._ports = ports

    @property
    def port(self) -> int:
        """The TCP port the server listens on (the one chosen when ``port=0``)."""
        return self._ports[0]

    def statistics(self) -> ServerStatistics:
        """The connection and frame counts now (a frozen snapshot)."""
        c = self._counters
        return ServerStatistics(
            connections_open=c.connections_open,
            connections_total=c.connections_total,
            frames_in=c.frames_in,
            frames_out=c.frames_out,
            bad_frames=c.bad_frames,
        )


def serve(
    handler: Callable[[JsonLinesStream], Awaitable[object]],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_frame: int = DEFAULT_MAX_FRAME,
    max_connections: int | None = None,
    grace: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
) -> AbstractAsyncContextManager[Server]:
    """Serve JSON Lines over TCP: run ``await handler(ch)`` for each connection.

    ::

        async def echo(ch: concur.jsonl.JsonLinesStream) -> None:
            async for message in ch:
                await ch.send(message)

        async with concur.jsonl.serve(echo, port=8765) as server:
            await anyio.sleep_forever()

    Each handler runs in the server's task group with its own :class:`JsonLinesStream`,
    which is closed when the handler returns. A handler that raises is logged once on the
    ``concur.jsonl`` logger at ERROR (with the traceback, naming the peer); only its own
    connection is closed (its client sees the end of the stream; no error frame is sent).

    With *max_connections*, the server stops accepting while that many handlers run:
    further clients wait in the operating system's backlog, keep what they sent, and are
    served in arrival order when a handler ends. None is dropped.

    Leaving the block closes the listener first (later clients are refused), then gives
    the running handlers *grace* seconds to finish, then cancels them; this shutdown is
    shielded, so it also runs when the block is left by an exception or a cancellation,
    which then propagates as it is. Nothing keeps running after the block.

    Args:
        handler: ``async def handler(ch: JsonLinesStream)``.
        host: the address to listen on (loopback by default; ``""`` or ``"0.0.0.0"`` for
            every interface).
        port: the TCP port; ``0`` lets the system choose (read it from ``server.port``).
        max_frame: the longest line accepted from a client, in bytes.
        max_connections: at most this many handlers at once; ``None``: no bound.
        grace: seconds the running handlers get to finish when the block is left.
        ssl_context: serve TLS with this server-side context (the handshake runs in the
            connection's task; a failed one is logged at WARNING and closes it).

    Raises:
        TypeError: *handler* is not an async function.
        ValueError: ``max_frame < 1``, ``max_connections < 1``, ``grace < 0`` or a port
            outside 0-65535.
        OSError: the address cannot be listened on (on entering).
    """
    check_async_function(handler, "serve", arg="handler")
    if not isinstance(host, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"host must be a str (an address or a host name), got {host!r}")
    if check_int(port, "port", minimum=0) > 65535:
        raise ValueError(f"port must be at most 65535, got {port}")
    check_int(max_frame, "max_frame", minimum=1)
    if max_connections is not None:
        check_int(max_connections, "max_connections", minimum=1)
    grace = check_number(grace, "grace", unit="seconds")
    return _serve(handler, host, port, max_frame, max_connections, grace, ssl_context)


@asynccontextmanager
async def _serve(
    handler: Callable[[JsonLinesStream], Awaitable[object]],
    host: str,
    port: int,
    max_frame: int,
    max_connections: int | None,
    grace: float,
    ssl_context: ssl.SSLContext | None,
) -> AsyncGenerator[Server]:
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port, backlog=_BACKLOG)
    try:
        sockets = [sub.extra(SocketAttribute.raw_socket) for sub in listener.listeners]
        counters = Counters()
        server = Server(counters, [sock.getsockname()[1] for sock in sockets])
        connections = _Connections(handler, counters, max_frame, max_connections, ssl_context)
        accepting = anyio.CancelScope()
        accepted_all = anyio.Event()
        handlers_done = anyio.Event()

        async def run_handlers(
            *, task_status: anyio.abc.TaskStatus[anyio.abc.TaskGroup] = anyio.TASK_STATUS_IGNORED
        ) -> None:
            # Shielded: a cancellation of the block must not reach the handlers before
            # their grace period; the shutdown below cancels them itself.
            try:
                with anyio.CancelScope(shield=True):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(accept_all, tg)
                        task_status.started(tg)
            finally:
                handlers_done.set()

        async def accept_all(tg: anyio.abc.TaskGroup) -> None:
            try:
                with accepting:
                    async with anyio.create_task_group() as accept_tg:
                        for sock in sockets:
                            accept_tg.start_soon(connections.accept_loop, sock, tg)
            finally:
                accepted_all.set()

        try:
            async with anyio.create_task_group() as outer:
                handlers = await outer.start(run_handlers)
                try:
                    yield server
                finally:
                    with anyio.CancelScope(shield=True):
                        accepting.cancel()
                        await accepted_all.wait()  # nothing waits on the sockets now
                        await listener.aclose()  # later clients are refused
                        with anyio.move_on_after(grace):
                            await connections.wait_idle()
                        handlers.cancel_scope.cancel()
                        await handlers_done.wait()
        except BaseExceptionGroup as group:
            raise concur.collapse(group) from None
    finally:
        with anyio.CancelScope(shield=True):
            await listener.aclose()


@final
class _Connections:
    """The accepting and the connections of one server.

    Invariant: ``counters.connections_open`` counts the connections accepted whose
    ``run`` has not ended; with *max_connections*, each holds one token of ``_slots``
    from before its ``accept()`` until its socket is closed, so at most that many
    handlers run and no ``accept()`` happens while they all do. Only the event loop's
    thread touches these, between awaits (no lock needed).
    """

    __slots__ = ("_counters", "_handler", "_idle", "_max_frame", "_name", "_slots", "_ssl")

    def __init__(
        self,
        handler: Callable[[JsonLinesStream], Awaitable[object]],
        counters: Counters,
        max_frame: int,
        max_connections: int | None,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._handler = handler
        self._name = fn_name(handler)
        self._counters = counters
        self._max_frame = max_frame
        self._ssl = ssl_context
        self._slots = (
            None if max_connections is None else anyio.Semaphore(max_connections, fast_acquire=True)
        )
        self._idle: anyio.Event | None = None

    async def wait_idle(self) -> None:
        """Wait until no connection is open (call once no more are accepted)."""
        if self._counters.connections_open:
            self._idle = anyio.Event()
            await self._idle.wait()

    async def accept_loop(self, listening: socket.socket, tg: anyio.abc.TaskGroup) -> None:
        listening.setblocking(False)
        slots = self._slots
        counters = self._counters
        while True:
            if slots is not None:
                await slots.acquire()
            try:
                sock = await _accept(listening)
            except BaseException:
                if slots is not None:
                    slots.release()
                raise
            counters.connections_open += 1
            counters.connections_total += 1
            tg.start_soon(self._run, sock, name=f"concur.jsonl.serve {self._name}")

    async def _run(self, sock: socket.socket) -> None:
        try:
            peer: object = sock.getpeername()
        except OSError:
            peer = "an unknown peer"
        try:
            stream = await _wrap(sock)
            try:
                await self._serve_one(stream, peer)
            finally:
                with anyio.CancelScope(shield=True):
                    await _close(stream)
        except Exception:
            # not the handler's failure (that is logged in _serve_one): the connection's
            # own set-up or closing; it must not bring the server down
            logger.warning("connection with %s failed", peer, exc_info=True)
        finally:
            counters = self._counters
            counters.connections_open -= 1
            if self._slots is not None:
                self._slots.release()
            if not counters.connections_open and self._idle is not None:
                self._idle.set()

    async def _serve_one(self, stream: anyio.abc.ByteStream, peer: object) -> None:
        if self._ssl is not None:
            try:
                stream = await TLSStream.wrap(
                    stream, server_side=True, ssl_context=self._ssl, standard_compatible=False
                )
            except (OSError, ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream):
                logger.warning("TLS handshake with %s failed", peer, exc_info=True)
                return
        ch = JsonLinesStream(stream, max_frame=self._max_frame)
        ch._counters = self._counters  # pyright: ignore[reportPrivateUsage]
        try:
            await self._handler(ch)
        except Exception:
            logger.error("jsonl handler %s failed for peer %s", self._name, peer, exc_info=True)


async def _close(stream: anyio.abc.ByteStream) -> None:
    """Close a connection so that the peer sees the end of the stream, not a reset.

    Closing a socket while the peer's data is unread sends a reset, which can make the
    peer lose the end of the stream: so half-close first (a FIN), discard what the peer
    still sends until it closes too (for at most ``_LINGER`` seconds), then close.
    """
    with anyio.move_on_after(_LINGER):
        try:
            await stream.send_eof()
            while True:
                await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        except OSError:
            pass
    await stream.aclose()


def _on_trio() -> bool:
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


async def _wrap(sock: socket.socket) -> anyio.abc.ByteStream:
    """A byte stream over an accepted socket that does not read ahead.

    trio's socket streams read only when asked: anyio's wrapper of one is used as it is.
    asyncio's transports read ahead: ``_jsonl_asyncio``'s bounded stream is used instead.
    """
    try:
        if not _on_trio():
            return await _jsonl_asyncio.wrap(sock)
        return await anyio.abc.SocketStream.from_socket(sock)
    except BaseException:
        sock.close()
        raise


async def _accept(listening: socket.socket) -> socket.socket:
    """The next connection on a non-blocking listening socket."""
    while True:
        try:
            sock, _ = listening.accept()
        except BlockingIOError:
            await anyio.wait_readable(listening)
            continue
        except OSError as exc:
            if exc.errno not in _TRANSIENT_ACCEPT_ERRORS:
                raise
            if exc.errno != errno.ECONNABORTED:
                logger.warning("accept() failed (%s); retrying in 0.1 s", exc)
                await anyio.sleep(0.1)
            continue
        # yield, but never lose the connection to a cancellation
        await anyio.lowlevel.cancel_shielded_checkpoint()
        return sock
