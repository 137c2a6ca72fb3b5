"""HttpLookupFeatures under an ambient per-call timeout: each key's lookup is bounded by it.

The lookups run through ``concur.map_async``, so an enclosing ``concur.scope(timeout=...)``
bounds each one (its retries and backoff included), not the whole call. A real JSON server
on 127.0.0.1, started by the test, answers; what it does is set per key.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import attrs
import polars as pl
import pytest

import concur
from components import HttpLookupFeatures

# a lookup the ambient timeout fails to bound would hang until the server lets go
pytestmark = pytest.mark.bound(10)


@attrs.define
class _Behaviour:
    """What the server does per key; shared between the test and the server's threads."""

    lock: threading.Lock = attrs.field(factory=threading.Lock)
    #: keys whose request hangs until the fixture's teardown
    hang: set[str] = attrs.field(factory=set)
    #: keys always answered 503 (a transient status, so the client retries)
    busy: set[str] = attrs.field(factory=set)
    #: seconds every answer waits
    delay: float = 0.0
    release: threading.Event = attrs.field(factory=threading.Event)
    requests: list[str] = attrs.field(factory=list)


@attrs.frozen
class _Server:
    url: str
    behaviour: _Behaviour


def _handler(behaviour: _Behaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            key = self.path.rsplit("/", 1)[-1]
            b = behaviour
            with b.lock:
                b.requests.append(key)
            if key in b.hang:
                b.release.wait(timeout=30)
            elif b.delay:
                time.sleep(b.delay)
            if key in b.busy:
                self._send(503, {"error": "busy"})
            else:
                self._send(200, {"score": int(key) * 10})

        def _send(self, status: int, payload: object) -> None:
            body = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up (timed out)
                pass

    return Handler


@pytest.fixture
def server() -> Iterator[_Server]:
    behaviour = _Behaviour()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(behaviour))
    httpd.daemon_threads = True
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, name="test-http-server"
    )
    thread.start()
    try:
        host, port = httpd.server_address[:2]
        yield _Server(f"http://{host!s}:{port}/lookup/{{key}}", behaviour)
    finally:
        behaviour.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


async def test_a_hung_lookup_fails_with_the_ambient_timeout(server: _Server) -> None:
    """A request that never answers ends at the ambient per-call timeout, far below the
    per-attempt *timeout*; the one failure propagates bare (map_async's error rule)."""
    server.behaviour.hang = {"2"}
    gen = HttpLookupFeatures(url=server.url, timeout=60, retries=0)
    began = time.monotonic()
    with concur.scope(timeout=0.5), pytest.raises(TimeoutError) as caught:
        await gen.agenerate(pl.DataFrame({"entity": [1, 2, 3]}))
    assert type(caught.value) is TimeoutError
    assert time.monotonic() - began >= 0.5
    assert "2" in server.behaviour.requests


async def test_the_ambient_timeout_bounds_a_lookup_with_its_retries(server: _Server) -> None:
    """A key answered 503 is retried after *backoff*; the ambient timeout ends the lookup
    during that wait, with no further attempt."""
    server.behaviour.busy = {"7"}
    gen = HttpLookupFeatures(url=server.url, timeout=60, retries=5, backoff=60)
    with concur.scope(timeout=0.5), pytest.raises(TimeoutError):
        await gen.agenerate(pl.DataFrame({"entity": [7]}))
    assert server.behaviour.requests == ["7"]


async def test_the_ambient_timeout_bounds_each_lookup_not_the_whole_call(
    server: _Server,
) -> None:
    """One lookup at a time, each well within the ambient timeout: the call succeeds,
    though all of them together take longer than the timeout."""
    server.behaviour.delay = 0.15
    keys = list(range(1, 9))
    gen = HttpLookupFeatures(url=server.url, max_concurrency=1)
    began = time.monotonic()
    with concur.scope(timeout=1.0):
        out = await gen.agenerate(pl.DataFrame({"entity": keys}))
    assert time.monotonic() - began >= 8 * 0.15
    assert out["http__score"].to_list() == [float(key * 10) for key in keys]
    assert sorted(server.behaviour.requests) == [str(key) for key in keys]


async def test_an_unbounded_ambient_timeout_lets_a_slow_lookup_finish(server: _Server) -> None:
    """``timeout=math.inf`` in the scope bounds nothing: a lookup slower than a bound the
    outer scope sets completes."""
    server.behaviour.delay = 0.3
    gen = HttpLookupFeatures(url=server.url)
    with concur.scope(timeout=0.05), concur.scope(timeout=float("inf")):
        out = await gen.agenerate(pl.DataFrame({"entity": [4]}))
    assert out["http__score"].to_list() == [40.0]
