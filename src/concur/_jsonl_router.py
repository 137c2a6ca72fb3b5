"""``concur.jsonl.Router``: dispatch JSON Lines messages to handlers by route.

Each handler is a component call (:func:`concur.call`): async handlers run on the event
loop, sync ones in worker threads under the ambient limiter, all in one
:class:`concur.TaskGroup` per connection, at most ``limit`` at once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Final, Literal, TypeVar, cast, final

import anyio

import concur

from ._core.checks import check_function, check_int, check_number, fn_name, is_async_callable
from ._jsonl_stream import BadFrame, FrameTooLarge, JsonLinesStream

__all__ = ["Router"]

logger = logging.getLogger("concur.jsonl")

F = TypeVar("F", bound=Callable[..., Any])
OnError = Literal["reply", "close"]
_ON_ERROR: Final = ("reply", "close")
_GONE: Final = (anyio.BrokenResourceError, anyio.ClosedResourceError)
_CLOSE_TIMEOUT: Final = 1.0  # seconds a half-close may wait for a send in progress


@final
class Router:
    """Route each received message to the handler registered for its ``key`` field.

    ::

        router = concur.jsonl.Router(limit=32, timeout=5)

        @router.route("ping")
        def ping(message: dict) -> dict:          # sync: runs in a worker thread
            return {"type": "pong"}

        @router.route("sum")
        async def add(message: dict) -> dict:     # async: runs on the event loop
            return {"type": "sum", "value": sum(message["values"])}

        @router.every(1.0)
        def heartbeat() -> dict:
            return {"type": "heartbeat"}

        async with concur.jsonl.serve(router.serve) as server:
            ...

    A handler takes the message and returns the reply, or ``None`` for no reply. A
    reply that is an object without an ``id`` gets the request's ``id`` (when it had one);
    replies are written in completion order, so clients match them by ``id``.

    Errors: an unknown route (also a message that is not an object, or whose ``key``
    field is missing or not a string), a handler that raises or times out, and a bad
    frame (:class:`~concur.jsonl.BadFrame`, :class:`~concur.jsonl.FrameTooLarge`) get the
    reply ``{"type": "error", "id": <the request's id or None>, "error": <str>}`` with
    ``on_error="reply"``, and reading goes on. With ``on_error="close"`` the connection is
    closed instead, without a reply (a half-close, so that the peer reads the end of the
    stream; a TLS stream is closed), the handlers in flight are cancelled and
    :meth:`serve` returns. Handler failures are also logged on the ``concur.jsonl`` logger
    at ERROR, with their traceback.

    Args:
        key: the field naming the route.
        limit: at most this many handlers in flight per connection; the next frame is
            read only when fewer run (back-pressure on the peer). A handler counts until
            its reply is written.
        timeout: seconds each handler call may take (``TimeoutError``, handled as a
            failure); ``None``: the ambient :func:`concur.scope`'s per-call timeout.
        on_error: ``"reply"`` or ``"close"``, as above.

    Raises:
        ValueError: ``limit < 1``, ``timeout <= 0`` or an unknown *on_error*.
        TypeError: *key* is not a str.
    """

    __slots__ = ("_every", "_key", "_limit", "_no_handoff", "_on_error", "_routes", "_timeout")

    def __init__(
        self,
        *,
        key: str = "type",
        limit: int = 16,
        timeout: float | None = None,
        on_error: OnError = "reply",
    ) -> None:
        if not isinstance(key, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"key must be a str (a field name), got {key!r}")
        self._key = key
        self._limit = check_int(limit, "limit")
        self._timeout = (
            None
            if timeout is None
            else check_number(timeout, "timeout", strict=True, unit="seconds")
        )
        if on_error not in _ON_ERROR:
            raise ValueError(f'on_error must be "reply" or "close", got {on_error!r}')
        self._on_error: OnError = on_error
        self._routes: dict[str, Callable[[Any], Any]] = {}
        self._every: list[tuple[float, Callable[[], Any]]] = []
        # The router keeps no reference to a message once it is dispatched: the handler
        # owns it, so it goes to a sync handler's thread as it is (no handoff copy). Entered
        # around sync handlers only: async ones get no thread, and their own thread calls
        # keep the ambient policy.
        self._no_handoff = concur.scope(handoff="off")

    @property
    def routes(self) -> dict[str, Callable[[Any], Any]]:
        """The registered routes and their handlers (a copy)."""
        return dict(self._routes)

    def route(self, name: str) -> Callable[[F], F]:
        """Register the decorated function as the handler of route *name*.

        The handler, sync or async (discovered at run time), is called with the message and
        returns the reply or ``None``.

        Raises:
            TypeError: *name* is not a str, or what is decorated is not callable.
            ValueError: *name* already has a handler.
        """
        if not isinstance(name, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"route() takes the route's name as a str, got {name!r}")
        if name in self._routes:
            raise ValueError(f"route {name!r} already has a handler")

        def register(fn: F) -> F:
            check_function(fn, "Router.route")
            self._routes[name] = fn
            return fn

        return register

    def every(self, seconds: float) -> Callable[[F], F]:
        """Register the decorated function as a sender called every *seconds*.

        ``fn()`` (sync or async) returns a message to send, or ``None``. On each
        connection served by :meth:`serve`, it is first called *seconds* after the start,
        then every *seconds* on a fixed schedule with no catch-up (a tick missed while the
        previous call ran is skipped). It stops when the connection ends. An exception
        from it (or its timeout) is handled like a failing handler's (an error reply with
        ``"id": None``, or the connection closes).

        Raises:
            ValueError: ``seconds <= 0``.
        """
        period = check_number(seconds, "seconds", strict=True, unit="seconds")
        if math.isinf(period):
            raise ValueError("seconds must be finite")

        def register(fn: F) -> F:
            check_function(fn, "Router.every")
            self._every.append((period, fn))
            return fn

        return register

    async def serve(self, ch: JsonLinesStream) -> None:
        """Read messages from *ch* and dispatch each to its route, until the end of input.

        Pass it as the handler of :func:`concur.jsonl.serve`, or call it on a client's
        stream. At the end of input it stops the senders, waits for the handlers in flight
        and writes their replies (the peer may have half-closed), then returns. A peer
        that vanished (reset, closed) also ends it normally, and so does
        ``on_error="close"`` (which closes *ch*).

        Cancellation: the handlers in flight and the senders are cancelled (a sync handler
        stops at :func:`concur.check_cancelled` and is waited for); *ch* is not closed.
        """
        await _Connection(self, ch).run()


@final
class _Connection:
    """One run of :meth:`Router.serve`.

    Invariant: ``_slots`` has one token taken per frame being read or handler in flight
    (taken before ``receive()``, given back when its reply is written or the frame is
    refused), so at most ``limit`` handlers run and the next frame is read only when
    fewer do. Touched only on the event loop's thread.
    """

    __slots__ = ("_ch", "_closing", "_router", "_slots", "_tg")

    def __init__(self, router: Router, ch: JsonLinesStream) -> None:
        self._router = router
        self._ch = ch
        self._slots = anyio.Semaphore(router._limit, fast_acquire=True)  # pyright: ignore[reportPrivateUsage]
        self._tg: concur.TaskGroup | None = None
        self._closing = False

    async def run(self) -> None:
        router = self._router
        try:
            async with concur.TaskGroup(name="concur.jsonl.Router") as tg:
                self._tg = tg
                senders: list[anyio.CancelScope] = []
                for seconds, fn in router._every:  # pyright: ignore[reportPrivateUsage]
                    senders.append(scope := anyio.CancelScope())
                    tg.start_soon(self._sender, scope, seconds, fn, name=fn_name(fn))
                try:
                    await self._read(tg)
                finally:
                    for scope in senders:
                        scope.cancel()
        except BaseExceptionGroup as group:
            raise concur.collapse(group) from None

    def _stop(self) -> None:
        """The peer is gone (or the connection is closing): cancel everything."""
        assert self._tg is not None
        self._tg.cancel_scope.cancel()

    async def _read(self, tg: concur.TaskGroup) -> None:
        ch = self._ch
        slots = self._slots
        while True:
            await slots.acquire()
            try:
                message = await ch.receive()
            except anyio.EndOfStream:
                slots.release()
                return
            except (BadFrame, FrameTooLarge) as exc:
                slots.release()
                try:
                    if await self._refuse(None, f"{type(exc).__name__}: {exc}"):
                        return
                except _GONE:
                    self._stop()
                    return
                continue
            except _GONE:
                slots.release()
                self._stop()
                return
            except BaseException:
                slots.release()
                raise
            tg.start_soon(self._dispatch, [message])
            del message  # the handler owns it now

    async def _dispatch(self, box: list[Any]) -> None:
        try:
            await self._handle(box)
        except _GONE:
            self._stop()
        finally:
            self._slots.release()

    async def _handle(self, box: list[Any]) -> None:
        router = self._router
        message: Any = box[0]
        request_id: Any = None
        route: Any = None
        has_id = False
        if isinstance(message, dict):
            fields = cast("dict[str, Any]", message)
            has_id = "id" in fields
            request_id = fields.get("id")
            route = fields.get(router._key)  # pyright: ignore[reportPrivateUsage]
            del fields
        del message  # the router keeps no reference: box.pop() hands it over below
        fn = router._routes.get(route) if isinstance(route, str) else None  # pyright: ignore[reportPrivateUsage]
        if fn is None:
            box.clear()
            if isinstance(route, str):
                text = f"unknown route {route!r}"
            else:
                text = f"unknown route: the message has no str {router._key!r} field"  # pyright: ignore[reportPrivateUsage]
            await self._refuse(request_id, text)
            return
        timeout = router._timeout  # pyright: ignore[reportPrivateUsage]
        try:
            if is_async_callable(fn):
                reply = await concur.call(fn, box.pop(), timeout=timeout)
            else:
                with router._no_handoff:  # pyright: ignore[reportPrivateUsage]
                    reply = await concur.call(fn, box.pop(), timeout=timeout)
        except Exception as exc:
            await self._failed(request_id, route, exc)
            return
        if reply is None:
            return
        if has_id and isinstance(reply, dict) and "id" not in reply:
            reply = {**cast("dict[str, Any]", reply), "id": request_id}
        try:
            await self._ch.send(reply)
        except (TypeError, ValueError) as exc:  # the reply cannot be encoded
            await self._failed(request_id, route, exc)

    async def _failed(self, request_id: Any, what: object, exc: Exception) -> None:
        """A handler or sender failed (or timed out)."""
        text = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, TimeoutError) and not str(exc):
            text = f"TimeoutError: {what!r} did not finish in time"
        else:
            logger.error("jsonl route %r failed", what, exc_info=exc)
        await self._refuse(request_id, text)

    async def _refuse(self, request_id: Any, text: str) -> bool:
        """Reply with an error, or close the connection; ``True`` when closing."""
        if self._router._on_error == "close":  # pyright: ignore[reportPrivateUsage]
            if not self._closing:
                self._closing = True
                self._stop()
                with anyio.CancelScope(shield=True):
                    await _close(self._ch)
            return True
        await self._ch.send({"type": "error", "id": request_id, "error": text})
        return False

    async def _tick(self, fn: Callable[[], Any]) -> None:
        router = self._router
        try:
            message = await concur.call(fn, timeout=router._timeout)  # pyright: ignore[reportPrivateUsage]
        except Exception as exc:
            await self._failed(None, fn_name(fn), exc)
            return
        if message is None:
            return
        try:
            await self._ch.send(message)
        except (TypeError, ValueError) as exc:  # the message cannot be encoded
            await self._failed(None, fn_name(fn), exc)

    async def _sender(
        self, scope: anyio.CancelScope, seconds: float, fn: Callable[[], Any]
    ) -> None:
        with scope:
            deadline = anyio.current_time() + seconds
            while True:
                await anyio.sleep_until(deadline)
                try:
                    await self._tick(fn)
                except _GONE:
                    self._stop()
                    return
                if self._closing:
                    return
                deadline += seconds
                now = anyio.current_time()
                if deadline <= now:  # no catch-up: skip the ticks missed
                    deadline += seconds * (math.floor((now - deadline) / seconds) + 1)


async def _close(ch: JsonLinesStream) -> None:
    """Close *ch* for ``on_error="close"`` so that the peer sees the end of the stream.

    A half-close (``send_eof``) sends a FIN even while the peer's unread requests sit in
    our buffers, where closing the socket would send a reset (and the peer could lose the
    end of the stream). Whoever owns *ch* closes it fully (``serve()`` does). Where a
    half-close is not possible (TLS), *ch* is closed.
    """
    with anyio.move_on_after(_CLOSE_TIMEOUT):
        try:
            await ch.send_eof()
        except (NotImplementedError, OSError, *_GONE):
            pass
        else:
            return
    await ch.aclose()
