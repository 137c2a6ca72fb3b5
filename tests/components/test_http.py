"""The HTTP lookup generator, against a real JSON server on 127.0.0.1 started by the test."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import anyio
import attrs
import httpx
import polars as pl
import pytest

from components import (
    CorrelationSelector,
    HttpLookupFeatures,
    LagFeatures,
    select_best_features,
)


@attrs.define
class _Behaviour:
    """What the test server does; shared between the test and the server's threads."""

    lock: threading.Lock = attrs.field(factory=threading.Lock)
    transient_first: set[str] = attrs.field(factory=set)
    always_503: set[str] = attrs.field(factory=set)
    missing: set[str] = attrs.field(factory=set)
    gate: threading.Event | None = None
    barrier: threading.Barrier | None = None
    requests: list[str] = attrs.field(factory=list)
    in_flight: int = 0
    max_in_flight: int = 0


@attrs.frozen
class _Server:
    url: str
    behaviour: _Behaviour


def _handler(behaviour: _Behaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            key = query["key"][0] if "key" in query else parts.path.rsplit("/", 1)[-1]
            b = behaviour
            with b.lock:
                b.requests.append(key)
                b.in_flight += 1
                b.max_in_flight = max(b.max_in_flight, b.in_flight)
                first = key in b.transient_first
                b.transient_first.discard(key)
            try:
                if b.barrier is not None:
                    b.barrier.wait(timeout=10)
                if b.gate is not None:
                    b.gate.wait(timeout=10)
            finally:
                # counted until just before the answer, so the client's next request
                # (which follows the answer) can never overlap this one in the count
                with b.lock:
                    b.in_flight -= 1
            if first or key in b.always_503:
                self._send(503, {"error": "busy"})
            elif key in b.missing:
                self._send(404, {"error": "no such key"})
            else:
                self._send(200, {"score": int(key) * 10, "flag": True, "label": "x"})

        def _send(self, status: int, payload: object) -> None:
            body = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up (a timeout test)
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
        yield _Server(f"http://{host!s}:{port}", behaviour)
    finally:
        if behaviour.gate is not None:
            behaviour.gate.set()
        if behaviour.barrier is not None:
            behaviour.barrier.abort()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _frame() -> pl.DataFrame:
    return pl.DataFrame({"entity": [3, 1, 3, 2, 1], "x": [0.1, 0.2, 0.3, 0.4, 0.5]})


async def test_lookups_are_joined_back_row_aligned(server: _Server) -> None:
    """Each distinct key is fetched once and its numeric fields come back per row."""
    gen = HttpLookupFeatures(url=server.url + "/lookup/{key}")
    out = await gen.agenerate(_frame())
    assert out.to_dict(as_series=False) == {"http__score": [30.0, 10.0, 30.0, 20.0, 10.0]}
    assert sorted(server.behaviour.requests) == ["1", "2", "3"]


async def test_url_without_placeholder_sends_the_key_as_a_query_parameter(
    server: _Server,
) -> None:
    """Without ``{key}`` in the URL the key travels as ``?key=...``."""
    gen = HttpLookupFeatures(url=server.url + "/lookup", key="entity", fields=("score",))
    out = await gen.agenerate(_frame())
    assert out["http__score"].to_list() == [30.0, 10.0, 30.0, 20.0, 10.0]


async def test_a_transient_503_is_retried_then_succeeds(server: _Server) -> None:
    """A 503 on the first attempt is retried, and the second attempt's answer is used."""
    server.behaviour.transient_first.update({"1", "2"})
    gen = HttpLookupFeatures(url=server.url + "/lookup/{key}", backoff=0)
    out = await gen.agenerate(_frame())
    assert out["http__score"].to_list() == [30.0, 10.0, 30.0, 20.0, 10.0]
    assert sorted(server.behaviour.requests) == ["1", "1", "2", "2", "3"]


async def test_retries_give_up_with_the_status_error(server: _Server) -> None:
    """A key that keeps answering 503 fails the call after the last retry."""
    server.behaviour.always_503.add("2")
    gen = HttpLookupFeatures(url=server.url + "/lookup/{key}", retries=2, backoff=0)
    with pytest.raises(httpx.HTTPStatusError, match="503"):
        await gen.agenerate(_frame())
    assert server.behaviour.requests.count("2") == 3


async def test_missing_keys_give_nulls(server: _Server) -> None:
    """A key answered with 404 has null features; the others are kept."""
    server.behaviour.missing.add("3")
    gen = HttpLookupFeatures(url=server.url + "/lookup/{key}", fields=("score", "absent"))
    out = await gen.agenerate(_frame())
    assert out["http__score"].to_list() == [None, 10.0, None, 20.0, 10.0]
    assert out["http__absent"].to_list() == [None] * 5


async def test_concurrency_is_bounded(server: _Server) -> None:
    """Requests overlap up to max_concurrency and never beyond it."""
    server.behaviour.barrier = threading.Barrier(2)
    frame = pl.DataFrame({"entity": list(range(8))})
    gen = HttpLookupFeatures(url=server.url + "/lookup/{key}", max_concurrency=2)
    out = await gen.agenerate(frame)
    assert out["http__score"].to_list() == [float(i * 10) for i in range(8)]
    assert server.behaviour.max_in_flight == 2


async def test_each_attempt_is_bounded_by_the_timeout(server: _Server) -> None:
    """A server that does not answer makes the call fail with TimeoutError."""
    server.behaviour.gate = threading.Event()
    gen = HttpLookupFeatures(url=server.url + "/lookup/{key}", timeout=0.05, retries=1, backoff=0)
    with pytest.raises((TimeoutError, httpx.TimeoutException)):
        await gen.agenerate(pl.DataFrame({"entity": [1]}))
    assert server.behaviour.requests == ["1", "1"]


def test_url_is_required_and_checked() -> None:
    """The endpoint has no default, and a non-HTTP URL raises ValueError naming url."""
    with pytest.raises(TypeError):
        HttpLookupFeatures()  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="url"):
        HttpLookupFeatures(url="ftp://example.org")
    with pytest.raises(ValueError, match="max_concurrency"):
        HttpLookupFeatures(url="http://127.0.0.1/", max_concurrency=0)


async def test_a_missing_key_column_raises(server: _Server) -> None:
    """A frame without the key column raises ValueError naming it."""
    gen = HttpLookupFeatures(url=server.url + "/{key}", key="user")
    with pytest.raises(ValueError, match="'user'"):
        await gen.agenerate(_frame())


async def test_null_keys_are_not_looked_up(server: _Server) -> None:
    """Rows whose key is null get null features, with no request for them."""
    gen = HttpLookupFeatures(url=server.url + "/lookup/{key}")
    out = await gen.agenerate(pl.DataFrame({"entity": [1, None, 1]}))
    assert out["http__score"].to_list() == [10.0, None, 10.0]
    assert server.behaviour.requests == ["1"]


def test_counts_must_be_whole_numbers() -> None:
    """max_concurrency and retries must be ints, named in the error."""
    with pytest.raises(ValueError, match="max_concurrency"):
        HttpLookupFeatures(url="http://127.0.0.1/", max_concurrency=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retries"):
        HttpLookupFeatures(url="http://127.0.0.1/", retries=-1)


async def test_cancellation_closes_the_client_and_propagates(server: _Server) -> None:
    """Cancelled while requests hang, the call stops and leaves nothing open."""
    server.behaviour.gate = threading.Event()
    gen = HttpLookupFeatures(url=server.url + "/lookup/{key}", timeout=30)
    with anyio.move_on_after(0.05) as scope:
        await gen.agenerate(_frame())
    assert scope.cancelled_caught


async def test_runs_alongside_thread_generators_in_the_runner(server: _Server) -> None:
    """In the runner the lookup is an async generator and its features join the others."""
    report = await select_best_features(
        pl.DataFrame({"entity": [1, 2, 3, 1], "x": [1.0, 2.0, 3.0, 4.0], "y": [1, 2, 3, 1]}),
        target="y",
        generators=[HttpLookupFeatures(url=server.url + "/lookup/{key}"), LagFeatures()],
        selector=CorrelationSelector(min_rows=2),
        k=3,
    )
    kinds = {run.name: run.kind for run in report.generators}
    assert kinds == {"http": "async", "lag": "thread"}
    assert report.selection.names[0] == "http__score"
    assert report.features["http__score"].to_list() == [10.0, 20.0, 30.0, 10.0]
