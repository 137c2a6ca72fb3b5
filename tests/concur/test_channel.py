"""The bounded channel of ``concur._core.channel`` (amap's results, the stream operators'
pumps): a randomized stress test on both backends.

Each example is a fresh event-loop run with random producers that send, reserve then put,
reserve then give the place back, or send under a timeout that may cancel the wait for
room, and one consumer that receives, sometimes waiting for an item under a timeout that
may cancel that wait. Checked: the bound is never exceeded (``items <= taken <=
capacity`` after every step), nothing is lost or received twice, each producer's items
arrive in the order it sent them, and no place is left taken at the end.
"""

from __future__ import annotations

import random

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from concur._core.channel import Channel

BOUND = 10  # seconds one example may take: a lost wake-up fails it instead of hanging


async def _exercise(seed: int) -> None:
    rng = random.Random(seed)
    capacity = rng.randint(1, 4)
    producers = rng.randint(1, 5)
    channel: Channel[tuple[int, int]] = Channel(capacity, producers)
    sent: set[tuple[int, int]] = set()
    got: list[tuple[int, int]] = []

    def check_bound() -> None:
        assert 0 <= len(channel.items) <= channel.taken <= channel.capacity

    async def produce(p: int) -> None:
        for k in range(rng.randint(0, 30)):
            roll = rng.random()
            if roll < 0.2:  # a send whose wait for room may be cancelled
                with anyio.move_on_after(rng.choice([0, 0.0001, 0.001])):
                    await channel.send((p, k))
                    sent.add((p, k))
                continue
            if roll < 0.45:  # reserve a place, then put or give it back
                if not channel.try_reserve():
                    await channel.reserve()
                if rng.random() < 0.3:
                    channel.unreserve()
                    continue
                channel.put((p, k))
            else:
                await channel.send((p, k))
            sent.add((p, k))
            check_bound()
            if rng.random() < 0.5:
                await anyio.lowlevel.checkpoint()
        channel.close_sender()

    async def consume() -> None:
        while True:
            if rng.random() < 0.2:  # a wait for an item that may be cancelled
                with anyio.move_on_after(rng.choice([0, 0.0001])):
                    await channel.wait_ready()
                continue
            try:
                got.append(await channel.receive())
            except anyio.EndOfStream:
                return
            check_bound()
            if rng.random() < 0.5:
                await anyio.lowlevel.checkpoint()

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:
            for p in range(producers):
                tg.start_soon(produce, p)
            tg.start_soon(consume)
    assert sorted(got) == sorted(sent)  # nothing lost
    assert len(set(got)) == len(got)  # nothing twice
    assert channel.taken == 0  # no place left taken
    for p in range(producers):  # FIFO per producer
        ks = [k for q, k in got if q == p]
        assert ks == sorted(ks)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_random_producers_and_consumer_keep_the_channel_promises(backend: str, seed: int) -> None:
    anyio.run(_exercise, seed, backend=backend)
