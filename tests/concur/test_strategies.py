"""Sequential, Concurrent and Pipeline strategies, Skipped and ActionSkipped, on asyncio
and trio."""

from __future__ import annotations

import gc
import pickle
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import concur


class Boom(Exception):
    """The failure an action raises on purpose."""


async def plus_one(value: int) -> int:
    await anyio.lowlevel.checkpoint()
    return value + 1


def times_two(value: int) -> int:
    return value * 2


async def boom(value: object) -> Any:
    await anyio.lowlevel.checkpoint()
    raise Boom(value)


class Rendezvous:
    """*parties* actions that each wait until all of them have started: proof that they
    ran at the same time (and that none of the others finished before the last started)."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.all_here = anyio.Event()

    async def meet(self, value: object) -> object:
        self.arrived += 1
        if self.arrived == self.parties:
            self.all_here.set()
        await self.all_here.wait()
        return value


# --- Skipped and ActionSkipped --------------------------------------------------------------


def test_skipped_is_a_frozen_failed_outcome() -> None:
    """``Skipped`` has is_ok False, its reason, and unwrap raises ActionSkipped."""
    skipped = concur.Skipped("not run")
    assert skipped.is_ok is False
    assert skipped.reason == "not run"
    assert skipped == concur.Skipped("not run")
    assert skipped != concur.Skipped("cancelled")
    with pytest.raises(concur.ActionSkipped, match="not run") as caught:
        skipped.unwrap()
    assert caught.value.reason == "not run"
    with pytest.raises(AttributeError):
        skipped.reason = "cancelled"  # type: ignore[misc]
    with pytest.raises(ValueError, match="reason"):
        concur.Skipped("later")  # type: ignore[arg-type]


def test_action_skipped_is_a_concur_runtime_error_and_pickles() -> None:
    """ActionSkipped is a ConcurError and a RuntimeError, and keeps its reason through
    pickling."""
    error = concur.ActionSkipped("cancelled")
    assert isinstance(error, concur.ConcurError)
    assert isinstance(error, RuntimeError)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is concur.ActionSkipped
    assert copy.reason == "cancelled"
    assert str(copy) == str(error)


# --- Sequential -----------------------------------------------------------------------------


async def test_sequential_runs_sync_and_async_actions_in_order() -> None:
    """Each action gets the value; sync ones run in a worker thread; outcomes are in
    action order, and no action starts before the previous one ended."""
    log: list[str] = []
    main = threading.get_ident()

    async def first(value: int) -> int:
        log.append("first start")
        await anyio.lowlevel.checkpoint()
        log.append("first end")
        return value

    def second(value: int) -> int:
        log.append("second")
        return threading.get_ident()

    outcomes = await concur.Sequential().run([first, second, plus_one], 5)
    assert outcomes[0] == concur.Ok(5)
    assert outcomes[1].is_ok
    assert outcomes[1].unwrap() != main
    assert outcomes[2] == concur.Ok(6)
    assert log == ["first start", "first end", "second"]


async def test_sequential_error_skips_the_rest() -> None:
    """After a failure the later actions never run and are Skipped("not run")."""
    ran: list[int] = []

    def record(value: int) -> int:
        ran.append(value)
        return value

    outcomes = await concur.Sequential().run([record, boom, record, times_two], 3)
    assert outcomes[0] == concur.Ok(3)
    assert isinstance(outcomes[1], concur.Err)
    assert isinstance(outcomes[1].error, Boom)
    assert outcomes[2:] == [concur.Skipped("not run"), concur.Skipped("not run")]
    assert ran == [3]


async def test_sequential_without_stop_on_error_runs_everything() -> None:
    """With stop_on_error=False every action runs and reports its own outcome."""
    outcomes = await concur.Sequential(stop_on_error=False).run([boom, plus_one, boom], 1)
    assert [type(o) for o in outcomes] == [concur.Err, concur.Ok, concur.Err]
    assert outcomes[1] == concur.Ok(2)


async def test_no_actions_give_no_outcomes() -> None:
    """Every strategy returns [] for no actions."""
    assert await concur.Sequential().run([], 1) == []
    assert await concur.Concurrent().run([], 1) == []
    assert await concur.Pipeline([]).run([], 1) == []


async def test_timeout_bounds_each_action() -> None:
    """An action that outlives *timeout* is Err(TimeoutError); the others are unaffected,
    on each strategy, and the ambient scope's timeout applies when none is given."""

    async def forever(value: object) -> None:
        await anyio.sleep_forever()

    for strategy in (concur.Sequential(stop_on_error=False), concur.Concurrent()):
        outcomes = await strategy.run([forever, plus_one], 1, timeout=0.01)
        assert isinstance(outcomes[0], concur.Err)
        assert isinstance(outcomes[0].error, TimeoutError)
        assert outcomes[1] == concur.Ok(2)
    with concur.scope(timeout=0.01):
        outcomes = await concur.Pipeline([[0], [1]]).run([plus_one, forever], 1)
    assert outcomes[0] == concur.Ok(2)
    assert isinstance(outcomes[1], concur.Err)
    assert isinstance(outcomes[1].error, TimeoutError)


# --- Concurrent -----------------------------------------------------------------------------


async def test_concurrent_runs_all_at_once() -> None:
    """Without a limit every action is running before any of them returns."""
    meeting = Rendezvous(4)
    outcomes = await concur.Concurrent().run([meeting.meet] * 4, "v")
    assert outcomes == [concur.Ok("v")] * 4


async def test_concurrent_limit_caps_and_is_reached() -> None:
    """With limit=2 at most two actions run at once, two do, and they start in order."""
    running = 0
    peak = 0
    started: list[int] = []
    gates = [anyio.Event() for _ in range(6)]

    def action(i: int) -> Any:
        async def run(value: object) -> int:
            nonlocal running, peak
            started.append(i)
            running += 1
            peak = max(peak, running)
            try:
                await gates[i].wait()
            finally:
                running -= 1
            return i

        return run

    async def release() -> None:
        for gate in gates:
            await anyio.wait_all_tasks_blocked()
            assert running == 2 or len(started) == 6
            gate.set()

    async with anyio.create_task_group() as group:
        group.start_soon(release)
        outcomes = await concur.Concurrent(limit=2).run([action(i) for i in range(6)], None)
    assert outcomes == [concur.Ok(i) for i in range(6)]
    assert peak == 2
    assert started[:2] == [0, 1]


async def test_concurrent_keeps_running_after_an_error_by_default() -> None:
    """Without cancel_on_first_error, a failure does not stop the other actions."""
    failed = anyio.Event()

    async def fail_first(value: object) -> None:
        failed.set()
        raise Boom(value)

    async def after_failure(value: object) -> str:
        await failed.wait()
        return "finished"

    outcomes = await concur.Concurrent().run([after_failure, fail_first], 0)
    assert outcomes[0] == concur.Ok("finished")
    assert isinstance(outcomes[1], concur.Err)


async def test_cancel_on_first_error_cancels_and_skips() -> None:
    """The first failure cancels the running actions (async and sync: Skipped("cancelled"))
    and those never started are Skipped("not run")."""
    async_started = anyio.Event()
    thread_started = threading.Event()
    cancelled_seen: list[str] = []
    never: list[int] = []

    async def blocked(value: object) -> None:
        async_started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled_seen.append("async")

    def cooperative(value: object) -> None:
        thread_started.set()
        try:
            while True:
                concur.check_cancelled()
                threading.Event().wait(0.001)
        finally:
            cancelled_seen.append("sync")

    async def fail_later(value: object) -> None:
        await async_started.wait()
        while not thread_started.is_set():
            await anyio.sleep(0.001)
        raise Boom(value)

    def never_started(value: object) -> None:  # pragma: no cover - must not run
        never.append(1)

    strategy = concur.Concurrent(limit=3, cancel_on_first_error=True)
    outcomes = await strategy.run([blocked, cooperative, fail_later, never_started], 0)
    assert outcomes[0] == concur.Skipped("cancelled")
    assert outcomes[1] == concur.Skipped("cancelled")
    assert isinstance(outcomes[2], concur.Err)
    assert isinstance(outcomes[2].error, Boom)
    assert outcomes[3] == concur.Skipped("not run")
    assert sorted(cancelled_seen) == ["async", "sync"]
    assert never == []


async def test_cancel_on_first_error_keeps_outcomes_already_settled() -> None:
    """Actions that ended before the failure keep their Ok."""
    outcomes = await concur.Concurrent(cancel_on_first_error=True).run(
        [times_two, lambda value: value], 4
    )
    assert outcomes == [concur.Ok(8), concur.Ok(4)]

    done = anyio.Event()

    async def quick(value: int) -> int:
        done.set()
        return value

    async def fail_after_quick(value: object) -> None:
        await done.wait()
        raise Boom

    outcomes = await concur.Concurrent(cancel_on_first_error=True).run([quick, fail_after_quick], 4)
    assert outcomes[0] == concur.Ok(4)
    assert isinstance(outcomes[1], concur.Err)


async def test_sync_actions_respect_the_ambient_thread_limit() -> None:
    """Sync actions run in worker threads under the ambient limiter: a hard cap."""
    lock = threading.Lock()
    running = 0
    peak = 0

    def action(value: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        threading.Event().wait(0.002)
        with lock:
            running -= 1
        return value

    async with concur.TaskGroup(thread_limit=2):
        outcomes = await concur.Concurrent().run([action] * 8, 1)
    assert outcomes == [concur.Ok(1)] * 8
    assert 1 <= peak <= 2


@pytest.mark.parametrize(
    "strategy",
    [concur.Sequential(), concur.Concurrent(), concur.Pipeline([[0, 1], [2]])],
    ids=["sequential", "concurrent", "pipeline"],
)
async def test_outside_cancellation_cancels_every_action_and_propagates(strategy: Any) -> None:
    """Cancelling the caller cancels the running actions, waits for them and returns
    nothing; later actions never start."""
    started = 0
    ended: list[str] = []

    async def blocked(value: object) -> None:
        nonlocal started
        started += 1
        try:
            await anyio.sleep_forever()
        finally:
            ended.append("cancelled")

    result: list[object] = []

    async def run() -> None:
        result.append(await strategy.run([blocked, blocked, blocked], 0))

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
    assert scope.cancelled_caught
    assert result == []
    assert (
        started
        == {"sequential": 1, "concurrent": 3, "pipeline": 2}[type(strategy).__name__.lower()]
    )
    assert len(ended) == started


async def test_action_with_group_of_failure_and_cancellation_is_an_error() -> None:
    """An action whose own task group fails while being cancelled reports its failure."""

    async def grouped(value: object) -> None:
        async with anyio.create_task_group() as group:

            async def child() -> None:
                raise Boom("child")

            group.start_soon(child)
            await anyio.sleep_forever()

    outcomes = await concur.Sequential().run([grouped], 0)
    assert isinstance(outcomes[0], concur.Err)
    assert isinstance(outcomes[0].error, BaseExceptionGroup)


@pytest.mark.parametrize(
    "strategy",
    [concur.Sequential(), concur.Concurrent(), concur.Pipeline([[0, 1]])],
    ids=["sequential", "concurrent", "pipeline"],
)
async def test_an_interrupt_from_an_action_propagates_bare(strategy: Any) -> None:
    """SystemExit raised by an action is not an outcome: it propagates, not in a group."""

    async def exit_now(value: object) -> None:
        raise SystemExit(3)

    with pytest.raises(SystemExit) as caught:
        await strategy.run([exit_now, plus_one], 1)
    assert caught.value.code == 3


async def test_each_sync_action_gets_its_own_handoff_of_the_value() -> None:
    """A polars frame reaches each sync action as its own clone, never the caller's."""
    pl = pytest.importorskip("polars")
    frame = pl.DataFrame({"a": [1, 2, 3]})

    def receive(value: Any) -> tuple[int, int]:
        return id(value), int(value["a"].sum())

    outcomes = await concur.Concurrent().run([receive, receive], frame)
    ids = {outcome.unwrap()[0] for outcome in outcomes}
    assert [outcome.unwrap()[1] for outcome in outcomes] == [6, 6]
    assert id(frame) not in ids
    assert len(ids) == 2


# --- Pipeline -------------------------------------------------------------------------------


async def test_pipeline_runs_stages_in_order_and_each_stage_at_once() -> None:
    """A stage starts only after the previous one ended; its actions run at the same
    time; outcomes are in action order, not stage order."""
    log: list[str] = []
    first_stage = Rendezvous(2)
    second_stage = Rendezvous(3)

    def step(name: str, meeting: Rendezvous) -> Any:
        async def run(value: int) -> str:
            log.append(f"{name} start")
            await meeting.meet(value)
            log.append(f"{name} end")
            return name

        return run

    actions = [
        step("a", second_stage),
        step("b", first_stage),
        step("c", second_stage),
        step("d", first_stage),
        step("e", second_stage),
    ]
    outcomes = await concur.Pipeline([[1, 3], [0, 2, 4]]).run(actions, 0)
    assert outcomes == [concur.Ok(name) for name in "abcde"]
    first = {"b start", "b end", "d start", "d end"}
    assert set(log[:4]) == first
    assert {entry[0] for entry in log[4:]} == {"a", "c", "e"}


async def test_pipeline_failure_lets_its_stage_finish_and_skips_later_stages() -> None:
    """The other actions of a failing stage run to the end; later stages are
    Skipped("not run") and never run."""
    failed = anyio.Event()
    ran_later: list[int] = []

    async def fail_now(value: object) -> None:
        failed.set()
        raise Boom

    async def finish_after_failure(value: object) -> str:
        await failed.wait()
        await anyio.lowlevel.checkpoint()
        return "finished"

    def later(value: int) -> int:
        ran_later.append(value)
        return value

    pipeline = concur.Pipeline([[2], [0, 1], [3]])
    outcomes = await pipeline.run([fail_now, finish_after_failure, times_two, later], 5)
    assert outcomes[2] == concur.Ok(10)
    assert isinstance(outcomes[0], concur.Err)
    assert outcomes[1] == concur.Ok("finished")
    assert outcomes[3] == concur.Skipped("not run")
    assert ran_later == []


async def test_pipeline_without_stop_on_error_runs_later_stages() -> None:
    """With stop_on_error=False the stages after a failure still run."""
    pipeline = concur.Pipeline([[0], [1], [2]], stop_on_error=False)
    outcomes = await pipeline.run([boom, plus_one, times_two], 3)
    assert isinstance(outcomes[0], concur.Err)
    assert outcomes[1:] == [concur.Ok(4), concur.Ok(6)]


def test_pipeline_keeps_its_stages_as_tuples() -> None:
    """The stages are stored as tuples (the pipeline is a frozen value)."""
    pipeline = concur.Pipeline([[0, 1], (2,)])
    assert pipeline.stages == ((0, 1), (2,))
    assert pipeline == concur.Pipeline(((0, 1), [2]))


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "name"),
    [
        (lambda: concur.Concurrent(limit=0), ValueError, "limit"),
        (lambda: concur.Concurrent(limit=2.5), TypeError, "limit"),
        (lambda: concur.Concurrent(limit=True), TypeError, "limit"),
        (lambda: concur.Concurrent(cancel_on_first_error=1), TypeError, "cancel_on_first_error"),
        (lambda: concur.Sequential(stop_on_error="no"), TypeError, "stop_on_error"),
        (lambda: concur.Pipeline([[0]], stop_on_error=None), TypeError, "stop_on_error"),
        (lambda: concur.Pipeline([[0], []]), ValueError, r"stages\[1\] is empty"),
        (lambda: concur.Pipeline([[0, 1], [1]]), ValueError, "stages: action 1"),
        (lambda: concur.Pipeline([[0, 0]]), ValueError, "stages: action 0"),
        (lambda: concur.Pipeline([[-1]]), ValueError, r"stages\[0\]\[0\]"),
        (lambda: concur.Pipeline([[0.0]]), TypeError, r"stages\[0\]\[0\]"),
        (lambda: concur.Pipeline([0, 1]), TypeError, r"stages\[0\]"),
        (lambda: concur.Pipeline(3), TypeError, "stages"),
        (lambda: concur.Pipeline("01"), TypeError, "stages"),
    ],
)
def test_bad_construction_names_the_argument(make: Any, error: type[Exception], name: str) -> None:
    """A bad argument of a strategy raises TypeError/ValueError naming it."""
    with pytest.raises(error, match=name):
        make()


async def test_bad_run_arguments_name_the_argument() -> None:
    """Bad actions, timeouts and pipeline indexes raise naming what is wrong, before any
    action runs."""
    ran: list[int] = []

    def record(value: int) -> None:
        ran.append(value)

    with pytest.raises(ValueError, match="stages names action 2, out of range for 2"):
        await concur.Pipeline([[0, 2], [1]]).run([record, record], 0)
    with pytest.raises(ValueError, match="stages leaves out action 1"):
        await concur.Pipeline([[0], [2]]).run([record, record, record], 0)
    with pytest.raises(ValueError, match="timeout"):
        await concur.Sequential().run([record], 0, timeout=-1)
    with pytest.raises(TypeError, match="timeout"):
        await concur.Concurrent().run([record], 0, timeout="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"actions\[1\]"):
        await concur.Concurrent().run([record, 3], 0)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="list of actions"):
        await concur.Sequential().run(record, 0)  # type: ignore[arg-type]
    assert ran == []


async def test_a_coroutine_object_is_refused_and_closed() -> None:
    """A coroutine object among the actions is refused and every coroutine closed, so no
    "never awaited" warning."""
    first = plus_one(1)
    second = plus_one(2)
    with pytest.raises(TypeError, match=r"actions\[0\].*coroutine"):
        await concur.Sequential().run([first, second], 0)  # type: ignore[list-item]
    assert first.cr_frame is None
    assert second.cr_frame is None
    gc.collect()


# --- the examples of the docs ---------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "services_strategies.inc"


def doc_examples() -> list[str]:
    """The ``code-block:: python`` blocks of docs/services_strategies.inc."""
    blocks = DOCS.read_text().split(".. code-block:: python\n")[1:]
    examples = []
    for block in blocks:
        lines = []
        for line in block.splitlines()[1:]:
            if line and not line.startswith("    "):
                break
            lines.append(line[4:])
        examples.append("\n".join(lines))
    return examples


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("index", [0, 1])
def test_doc_examples_run(backend: str, index: int) -> None:
    """Every example of the strategies and decorators docs runs, its asserts hold."""
    examples = doc_examples()
    assert len(examples) == 2
    code = examples[index]
    assert code.rstrip().endswith("anyio.run(main)")
    code = code.rstrip().removesuffix("anyio.run(main)") + f"anyio.run(main, backend={backend!r})"
    exec(compile(code, str(DOCS), "exec"), {"__name__": "doc_example"})
