"""User-style code that must type-check under mypy --strict and pyright strict.

Each ``assert_type`` states what a checker must infer; each line marked
``# type: ignore[...]`` is a misuse the checkers must reject (``--warn-unused-ignores``
turns a misuse that slipped through into an error). It is checked, never run.
"""

# pyright: strict, reportUnnecessaryTypeIgnoreComment=true

from __future__ import annotations

import functools
from typing import Any, assert_type

import anyio
import anyio.abc

import concur


async def fetch_json(url: str) -> dict[str, int]:
    await anyio.sleep(0)
    return {url: 1}


def crunch(n: int) -> float:
    return n / 2


async def spawn_and_call() -> None:
    async with concur.TaskGroup(thread_limit=2) as tg:
        a = tg.spawn(fetch_json, "https://x")
        b = tg.spawn(crunch, 4)
        c = tg.spawn(fetch_json("https://y"))
        assert_type(a, concur.TaskHandle[dict[str, int]])
        assert_type(b, concur.TaskHandle[float])
        assert_type(c, concur.TaskHandle[dict[str, int]])
        tg.spawn(crunch, "not an int")  # type: ignore[arg-type]
        tg.spawn(fetch_json, 1)  # type: ignore[arg-type]
        tg.spawn(crunch)  # type: ignore[arg-type, call-arg]
        tg.start_soon(fetch_json, "u")
        tg.start_soon(crunch, 1)  # type: ignore[arg-type]
        assert_type(await a, dict[str, int])
    assert_type(await concur.call(fetch_json, "u"), dict[str, int])
    assert_type(await concur.call(crunch, 3), float)
    await concur.call(crunch, "x")  # type: ignore[arg-type]
    assert_type(await concur.to_thread(crunch, 3), float)
    await concur.to_thread(crunch, "x")  # type: ignore[arg-type, misc]
    await concur.to_thread(fetch_json, "u")  # type: ignore[misc]
    assert_type(await concur.to_thread(functools.partial(crunch, 2)), float)


def an_anyio_task_group(tg: anyio.abc.TaskGroup) -> None:
    """anyio APIs that take a task group accept a concur.TaskGroup."""


async def interop_with_anyio() -> None:
    async with concur.TaskGroup() as tg:
        an_anyio_task_group(tg)


async def wait_strategies() -> None:
    assert_type(await concur.gather(fetch_json("a"), fetch_json("b")), list[dict[str, int]])
    assert_type(await concur.map_async(crunch, [1, 2]), list[float])
    assert_type(await concur.map_async(fetch_json, ["a"]), list[dict[str, int]])
    assert_type(await concur.race(functools.partial(fetch_json, "a")), dict[str, int])
    async with concur.amap(crunch, range(3)) as results:
        async for r in results:
            assert_type(r, float)


def sync_entry_points() -> None:
    assert_type(concur.run(fetch_json, "u"), dict[str, int])
    concur.run(crunch, 1)  # type: ignore[arg-type]
    concur.run(fetch_json, 1)  # type: ignore[arg-type]
    with concur.Runner() as runner:
        assert_type(runner.run(fetch_json, "u"), dict[str, int])
        runner.run(crunch, 1)  # type: ignore[arg-type]
        future = runner.submit(fetch_json, "u")
        assert_type(future.result(), dict[str, int])
        runner.submit(crunch, 1)  # type: ignore[arg-type]
    sync_fetch = concur.syncify(fetch_json)
    assert_type(sync_fetch("u"), dict[str, int])
    sync_fetch(1)  # type: ignore[arg-type]
    concur.syncify(crunch)  # type: ignore[arg-type]


async def asyncify_a_sync_function() -> None:
    acrunch = concur.asyncify(crunch)
    assert_type(await acrunch(2), float)
    await acrunch("x")  # type: ignore[arg-type]
    concur.asyncify(fetch_json)("u")  # type: ignore[operator]


def collapse_is_typed(group: BaseExceptionGroup[Any]) -> None:
    assert_type(concur.collapse(group), BaseException)
