"""The asyncio side of ``concur.jsonl.serve``: accepted sockets whose read-ahead is bounded.

anyio's accepted asyncio sockets read into memory without bound until a ``receive()`` has
to wait, so a handler that does not read would never slow its client down. This stream is
an asyncio protocol (public asyncio API) that pauses reading once ``HIGH_WATER`` bytes wait
unread, and resumes when ``receive()`` takes them: at most ``HIGH_WATER`` plus one read of
the transport is held, and the kernel's buffers then fill and the client's ``send()``
waits. (A stream over :func:`anyio.wait_readable` reads only when asked too, but costs a
reader registration per wait: it measured at about half the frames/s in a ping-pong.)

trio's streams read only when asked: there, anyio's stream is used as it is.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Callable, Mapping
from typing import Any, Final, cast, final

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.abc import SocketAttribute

__all__ = ["HIGH_WATER", "wrap"]

HIGH_WATER: Final = 65_536


@final
class _Protocol(asyncio.Protocol):
    """Buffers what the transport reads, pausing it at ``HIGH_WATER`` bytes.

    Invariant: reading is paused (``paused``) only while ``size >= HIGH_WATER``, and
    ``size`` is the total length of ``chunks``; ``receive()`` resumes reading when it takes
    ``size`` below ``HIGH_WATER``. At most one task waits to read (``read_waiter``) and one
    to write (``write_waiter``). Only the event loop's thread touches it.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.paused = False
        self.eof = False
        self.lost = False
        self.error: Exception | None = None
        self.write_paused = False
        self.read_waiter: asyncio.Future[None] | None = None
        self.write_waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        # any byte the kernel did not take pauses writing: send() waits for it, as anyio's
        # stream does
        self.transport.set_write_buffer_limits(0)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(bytes(data))
        self.size += len(data)
        if self.size >= HIGH_WATER and not self.paused:
            self.paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        self.wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self.wake_reader()
        return True  # keep the transport open: the handler may still write

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc
        self.wake_reader()
        self.wake_writer()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.wake_writer()

    def wake_reader(self) -> None:
        waiter = self.read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wake_writer(self) -> None:
        waiter = self.write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


@final
class _Stream(anyio.abc.ByteStream):
    """A byte stream over an accepted socket's asyncio transport and :class:`_Protocol`."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol, sock: socket.socket):
        self._transport = transport
        self._protocol = protocol
        self._sock = sock
        self._closed = False

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        sock = self._sock
        return {
            SocketAttribute.family: lambda: sock.family,
            SocketAttribute.local_address: lambda: sock.getsockname(),
            SocketAttribute.local_port: lambda: sock.getsockname()[1],
            SocketAttribute.remote_address: lambda: sock.getpeername(),
            SocketAttribute.remote_port: lambda: sock.getpeername()[1],
            SocketAttribute.raw_socket: lambda: sock,
        }

    def _check_open(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        protocol = self._protocol
        if protocol.lost:
            raise anyio.BrokenResourceError("the connection was lost") from protocol.error

    async def receive(self, max_bytes: int = 65536) -> bytes:
        protocol = self._protocol
        if protocol.chunks:
            await anyio.lowlevel.checkpoint()  # cancelled here, nothing was taken
        else:
            while not protocol.chunks:
                if self._closed:
                    raise anyio.ClosedResourceError
                if protocol.error is not None:
                    raise anyio.BrokenResourceError("the connection broke") from protocol.error
                if protocol.eof or protocol.lost:
                    raise anyio.EndOfStream
                if protocol.read_waiter is not None:
                    raise anyio.BusyResourceError("reading from")
                waiter = protocol.read_waiter = asyncio.get_running_loop().create_future()
                try:
                    await waiter
                finally:
                    protocol.read_waiter = None
        if self._closed:
            raise anyio.ClosedResourceError
        chunk = protocol.chunks.popleft()
        if len(chunk) > max_bytes:
            protocol.chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        protocol.size -= len(chunk)
        if protocol.paused and protocol.size < HIGH_WATER and not protocol.lost:
            protocol.paused = False
            self._transport.resume_reading()
        return chunk

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        protocol = self._protocol
        if protocol.write_waiter is not None:
            raise anyio.BusyResourceError("writing to")
        try:
            self._transport.write(item)
        except RuntimeError as exc:  # the transport is closing
            raise anyio.BrokenResourceError("the connection is closing") from exc
        if not protocol.write_paused:
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return
        # the kernel did not take it all: wait until it has (back-pressure)
        while protocol.write_paused:
            self._check_open()
            waiter = protocol.write_waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                protocol.write_waiter = None
        self._check_open()

    async def send_eof(self) -> None:
        self._check_open()
        try:
            self._transport.write_eof()
        except (OSError, RuntimeError) as exc:
            raise anyio.BrokenResourceError("the connection broke") from exc
        await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            transport = self._transport
            if transport.get_write_buffer_size():
                transport.abort()  # the peer does not read: do not wait for it
            else:
                transport.close()
            self._protocol.wake_reader()
            self._protocol.wake_writer()
        await anyio.lowlevel.checkpoint()


async def wrap(sock: socket.socket) -> anyio.abc.ByteStream:
    """A byte stream over the accepted socket *sock* (which it owns), on asyncio."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_accepted_socket(_Protocol, sock)
    return _Stream(transport, protocol, sock)
