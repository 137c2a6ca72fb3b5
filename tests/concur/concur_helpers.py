"""Helpers shared by the foundation tests (not a test module)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

WAIT = 20.0  # a generous bound for threading waits, never reached when the tests pass


async def fetch(url: str) -> str:
    await anyio.lowlevel.checkpoint()
    return f"async:{url}:{threading.get_ident()}"


def compute(x: str) -> str:
    return f"sync:{x}:{threading.get_ident()}"


class Component:
    async def amethod(self, x: str) -> str:
        return await fetch(x)

    def method(self, x: str) -> str:
        return compute(x)


class AsyncCallable:
    async def __call__(self, x: str) -> str:
        return await fetch(x)


class SyncCallable:
    def __call__(self, x: str) -> str:
        return compute(x)


_component = Component()

DISCOVERY: list[tuple[str, Callable[[str], Any], str]] = [
    ("async function", fetch, "async"),
    ("sync function", compute, "sync"),
    ("partial of async", functools.partial(fetch), "async"),
    ("partial of sync", functools.partial(compute), "sync"),
    ("partial of partial of async", functools.partial(functools.partial(fetch)), "async"),
    ("bound async method", _component.amethod, "async"),
    ("bound sync method", _component.method, "sync"),
    ("partial of bound async method", functools.partial(_component.amethod), "async"),
    ("object with async __call__", AsyncCallable(), "async"),
    ("object with sync __call__", SyncCallable(), "sync"),
]


def check_colour(result: str, colour: str, loop_thread: int) -> None:
    kind, arg, thread = result.split(":")
    assert (kind, arg) == (colour, "x")
    if colour == "async":
        assert int(thread) == loop_thread
    else:
        assert int(thread) != loop_thread


class Peak:
    """Counts threads running at once, and the most that ever did."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.running -= 1


async def wait_thread_event(event: threading.Event) -> None:
    assert await anyio.to_thread.run_sync(event.wait, WAIT)


def returns_coroutine() -> Coroutine[Any, Any, str]:
    return fetch("u")
