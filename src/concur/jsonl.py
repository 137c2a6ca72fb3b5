"""JSON Lines channels over TCP: framing with back-pressure, a server, a message router.

::

    router = concur.jsonl.Router()

    @router.route("ping")
    def ping(message):
        return {"type": "pong"}

    async with concur.jsonl.serve(router.serve) as server:
        async with await concur.jsonl.connect("127.0.0.1", server.port) as ch:
            await ch.send({"type": "ping", "id": 1})
            print(await ch.receive())  # {'type': 'pong', 'id': 1}

The exceptions::

    ConcurError
     ├── FrameTooLarge   (also a ValueError) a line longer than max_frame
     └── BadFrame        (also a ValueError) a line that is not UTF-8 or not JSON

Everything else is anyio's: :class:`anyio.EndOfStream` at the end of input,
:class:`anyio.BrokenResourceError` for a reset connection, and so on.
"""

from __future__ import annotations

from ._core.exports import publish_all
from ._jsonl_router import Router as Router
from ._jsonl_server import Server as Server
from ._jsonl_server import ServerStatistics as ServerStatistics
from ._jsonl_server import serve as serve
from ._jsonl_stream import BadFrame as BadFrame
from ._jsonl_stream import FrameTooLarge as FrameTooLarge
from ._jsonl_stream import JsonLinesStream as JsonLinesStream
from ._jsonl_stream import connect as connect

__all__ = (
    "BadFrame",
    "FrameTooLarge",
    "JsonLinesStream",
    "Router",
    "Server",
    "ServerStatistics",
    "connect",
    "serve",
)


publish_all(globals(), __all__, __name__)  # concur.jsonl.Router, not concur._jsonl_router...
