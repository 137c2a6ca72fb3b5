"""The selection runner: concurrency, error modes, naming, limits and the planted features."""

from __future__ import annotations

import os
import threading
import time

import anyio
import anyio.from_thread
import attrs
import polars as pl
import pytest

import concur
from components import (
    PLANTED_FEATURES,
    TARGET,
    CorrelationSelector,
    FeatureGenerator,
    InteractionFeatures,
    LagFeatures,
    RollingFeatures,
    Selection,
    SelectionReport,
    SQLWindowFeatures,
    SyncFeatureGenerator,
    SyncFeatureSelector,
    make_dataset,
    select_best_features,
    select_best_features_sync,
)
from concur._core.settings import settings_var


def _frame() -> pl.DataFrame:
    return pl.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [2.0, 4.0, 6.0, 9.0]})


@attrs.frozen
class _Double(SyncFeatureGenerator):
    name: str = "double"
    seen: list[list[str]] = attrs.field(factory=list, eq=False)

    def generate(self, frame: pl.DataFrame) -> pl.DataFrame:
        self.seen.append(frame.columns)
        return frame.select((pl.col("x") * 2).alias("x2"), (pl.col("x") + 1).alias("double__x1"))


@attrs.frozen(eq=False)
class _Async(FeatureGenerator):
    """An async generator that can wait on an event and record what happened to it."""

    name: str = "async"
    wait: anyio.Event | None = None
    started: anyio.Event = attrs.field(factory=anyio.Event)
    cancelled: list[bool] = attrs.field(factory=list)
    fail: BaseException | None = None
    result: object = None

    async def agenerate(self, frame: pl.DataFrame) -> pl.DataFrame:
        self.started.set()
        if self.wait is not None:
            try:
                await self.wait.wait()
            except anyio.get_cancelled_exc_class():
                self.cancelled.append(True)
                raise
        if self.fail is not None:
            raise self.fail
        if self.result is not None:
            return self.result  # type: ignore[return-value]
        return frame.select((pl.col("x") * -1).alias("neg"))


@attrs.frozen(eq=False)
class _LimiterProbe(FeatureGenerator):
    name: str = "probe"
    seen: list[anyio.CapacityLimiter] = attrs.field(factory=list)

    async def agenerate(self, frame: pl.DataFrame) -> pl.DataFrame:
        self.seen.append(settings_var.get().current_limiter())
        return frame.select(pl.col("x").alias("same"))


async def test_mixed_sync_and_async_generators_run_and_are_prefixed() -> None:
    """Sync and async generators both run; bare names get the prefix, prefixed ones keep it."""
    sync, asyn = _Double(), _Async()
    report = await select_best_features(
        _frame(),
        target="y",
        generators=[sync, asyn],
        selector=CorrelationSelector(min_rows=2),
        k=5,
    )
    assert sync.seen == [["x"]]  # the target never reaches a generator
    assert set(report.selection.scores) == {"double__x2", "double__x1", "async__neg"}
    assert report.features.columns == list(report.selection.names)
    assert report.features.height == 4
    runs = {run.name: run for run in report.generators}
    assert runs["double"].kind == "thread"
    assert runs["async"].kind == "async"
    assert all(run.outcome == "ok" and run.rows == 4 for run in runs.values())
    assert runs["double"].columns == 2
    assert [run.name for run in report.generators] == ["double", "async"]


async def test_fail_mode_cancels_the_siblings_and_raises_the_error_bare() -> None:
    """The first failure cancels the other generators and propagates unwrapped."""
    waiter = _Async(name="waiter", wait=anyio.Event())
    failing = _Async(name="failing", fail=KeyError("boom"))
    with pytest.raises(KeyError, match="boom"):
        await select_best_features(
            _frame(), target="y", generators=[waiter, failing], selector=CorrelationSelector()
        )
    assert waiter.cancelled == [True]


async def test_skip_mode_records_failures_and_keeps_the_rest() -> None:
    """With on_error="skip" a failure is reported and the others' features are used."""
    failing = _Async(name="failing", fail=RuntimeError("down"))
    report = await select_best_features(
        _frame(),
        target="y",
        generators=[failing, _Double()],
        selector=CorrelationSelector(),
        on_error="skip",
    )
    runs = {run.name: run for run in report.generators}
    assert runs["failing"].outcome == "error"
    assert isinstance(runs["failing"].error, RuntimeError)
    assert runs["failing"].columns == 0
    assert runs["double"].outcome == "ok"
    assert all(name.startswith("double__") for name in report.selection.scores)


async def test_skip_mode_with_every_generator_failing_raises_a_group() -> None:
    """When all generators fail under "skip", an ExceptionGroup holds every error."""
    gens = [_Async(name="a", fail=ValueError("a")), _Async(name="b", fail=OSError("b"))]
    with pytest.RaisesGroup(ValueError, OSError, match="all feature generators failed"):
        await select_best_features(
            _frame(), target="y", generators=gens, selector=CorrelationSelector(), on_error="skip"
        )


async def test_timeout_bounds_the_whole_run() -> None:
    """A run that does not finish within timeout raises TimeoutError, cancelling generators."""
    waiter = _Async(wait=anyio.Event())
    with pytest.raises(TimeoutError):
        await select_best_features(
            _frame(), target="y", generators=[waiter], selector=CorrelationSelector(), timeout=0.05
        )
    assert waiter.cancelled == [True]


async def test_duplicate_or_clashing_names_fail_before_anything_runs() -> None:
    """Two generators named alike, or names that could clash once prefixed, raise first."""
    first, second = _Async(name="g"), _Async(name="g")
    with pytest.raises(ValueError, match="two generators are named 'g'"):
        await select_best_features(
            _frame(), target="y", generators=[first, second], selector=CorrelationSelector()
        )
    assert not first.started.is_set()
    assert not second.started.is_set()
    a, b = _Async(name="a"), _Async(name="a__b")
    with pytest.raises(ValueError, match="clash"):
        await select_best_features(
            _frame(), target="y", generators=[a, b], selector=CorrelationSelector()
        )
    assert not a.started.is_set()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k": 0}, ValueError, "k must be at least 1"),
        ({"on_error": "ignore"}, ValueError, "on_error"),
        ({"thread_limit": 0}, ValueError, "thread_limit"),
        ({"timeout": -1}, ValueError, "timeout"),
        ({"target": "nope"}, ValueError, "target"),
        ({"generators": []}, ValueError, "generators"),
        ({"selector": "correlation"}, TypeError, "selector"),
        ({"generators": [LagFeatures, LagFeatures()]}, TypeError, "generators"),
    ],
)
async def test_bad_arguments_raise_naming_the_argument(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    """Bad arguments raise ValueError or TypeError naming the argument."""
    arguments: dict[str, object] = {
        "target": "y",
        "generators": [_Async()],
        "selector": CorrelationSelector(),
        **kwargs,
    }
    with pytest.raises(error, match=match):
        await select_best_features(_frame(), **arguments)  # type: ignore[arg-type]


async def test_results_that_are_not_row_aligned_frames_are_refused() -> None:
    """A generator returning the wrong number of rows, or no frame, fails the run."""
    short = _Async(result=pl.DataFrame({"a": [1.0]}))
    with pytest.raises(ValueError, match="row-aligned"):
        await select_best_features(
            _frame(), target="y", generators=[short], selector=CorrelationSelector()
        )
    wrong = _Async(result=[1, 2, 3, 4])
    with pytest.raises(TypeError, match="not a polars DataFrame"):
        await select_best_features(
            _frame(), target="y", generators=[wrong], selector=CorrelationSelector()
        )


@attrs.frozen(eq=False)
class _SyncLimiterProbe(SyncFeatureGenerator):
    name: str = "sync_probe"
    seen: list[float] = attrs.field(factory=list)

    def generate(self, frame: pl.DataFrame) -> pl.DataFrame:
        # the thread runs in the caller's context: the ambient settings are visible here
        self.seen.append(settings_var.get().current_limiter().total_tokens)
        return frame.select(pl.col("x").alias("same"))


async def test_thread_limit_defaults_to_the_enclosing_limiter_else_the_usable_cpus() -> None:
    """thread_limit=None uses the ambient limiter if set, else one token per usable CPU."""
    probe, sync_probe = _LimiterProbe(), _SyncLimiterProbe()
    selector = CorrelationSelector()
    gens = [probe, sync_probe]
    await select_best_features(_frame(), target="y", generators=gens, selector=selector)
    assert sync_probe.seen[-1] == len(os.sched_getaffinity(0))
    # the async generators' own thread calls get a token of their own
    assert probe.seen[-1].total_tokens == 1
    limiter = anyio.CapacityLimiter(3)
    with concur.scope(limiter=limiter):
        await select_best_features(_frame(), target="y", generators=gens, selector=selector)
    assert probe.seen[-1] is limiter
    assert sync_probe.seen[-1] == 3
    async with concur.TaskGroup(limiter=limiter):
        await select_best_features(_frame(), target="y", generators=gens, selector=selector)
    assert probe.seen[-1] is limiter
    await select_best_features(
        _frame(), target="y", generators=gens, selector=selector, thread_limit=5
    )
    assert probe.seen[-1].total_tokens == 5
    assert sync_probe.seen[-1] == 5


@attrs.frozen
class _Greedy(SyncFeatureSelector):
    name: str = "greedy"

    def select(self, features: pl.DataFrame, target: pl.Series, k: int) -> Selection:
        return Selection(features.columns, dict.fromkeys(features.columns, 1.0))


async def test_a_selector_choosing_more_than_k_is_refused() -> None:
    """A selector result with more than k names raises ValueError naming the selector."""
    with pytest.raises(ValueError, match="'greedy'"):
        await select_best_features(
            _frame(), target="y", generators=[_Double()], selector=_Greedy(), k=1
        )


@pytest.mark.bound(120)
async def test_the_planted_features_are_selected_on_the_built_in_data() -> None:
    """On a small built-in data set the three planted features are among those selected."""
    frame = make_dataset(20_000, seed=7)
    keys = {"entity": "entity", "order": "order"}
    with SQLWindowFeatures(**keys) as sql:
        report = await select_best_features(
            frame,
            target=TARGET,
            generators=[
                LagFeatures(**keys),
                RollingFeatures(**keys),
                InteractionFeatures(**keys),
                sql,
            ],
            selector=CorrelationSelector(),
            k=10,
        )
    assert set(PLANTED_FEATURES) <= set(report.selection.names)
    assert set(report.selection.names[:3]) == set(PLANTED_FEATURES)
    assert all(run.outcome == "ok" for run in report.generators)


def test_sync_twin_runs_from_plain_sync_code() -> None:
    """select_best_features_sync works in a script with no event loop, on both backends."""
    for backend in ("asyncio", "trio"):
        report = select_best_features_sync(
            _frame(),
            target="y",
            generators=[_Double()],
            selector=CorrelationSelector(min_rows=2),
            k=1,
            backend=backend,  # type: ignore[arg-type]
        )
        assert len(report.selection.names) == 1
        assert report.generators[0].outcome == "ok"


async def test_sync_twin_works_while_a_loop_runs_in_this_thread() -> None:
    """Called from sync code under a running loop (a notebook cell), it still returns."""
    report = select_best_features_sync(
        _frame(), target="y", generators=[_Double()], selector=CorrelationSelector(), k=2
    )
    assert set(report.selection.names) <= {"double__x2", "double__x1"}


async def test_sync_twin_works_from_a_worker_thread() -> None:
    """Called from a concur worker thread, it runs on the parent loop."""

    def in_thread() -> tuple[str, ...]:
        report = select_best_features_sync(
            _frame(),
            target="y",
            generators=[_Double()],
            selector=CorrelationSelector(min_rows=2),
            k=1,
        )
        return report.selection.names

    assert len(await concur.to_thread(in_thread)) == 1


@attrs.frozen(eq=False)
class _Blocking(SyncFeatureGenerator):
    """A sync generator that meets its siblings at a barrier, or waits to be released."""

    name: str = "blocking"
    barrier: threading.Barrier | None = None
    release: threading.Event | None = None
    started: anyio.Event | None = None
    state: dict[str, int] = attrs.field(factory=dict)
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def generate(self, frame: pl.DataFrame) -> pl.DataFrame:
        with self.lock:
            self.state["running"] = self.state.get("running", 0) + 1
            self.state["most"] = max(self.state.get("most", 0), self.state["running"])
        try:
            if self.started is not None:
                anyio.from_thread.run_sync(self.started.set)
            if self.barrier is not None:
                self.barrier.wait(timeout=10)
            if self.release is not None:
                self.release.wait(timeout=10)
            return frame.select(pl.col("x").alias("copy"))
        finally:
            with self.lock:
                self.state["running"] -= 1
                self.state["returned"] = self.state.get("returned", 0) + 1


async def test_sync_generators_run_in_parallel_threads() -> None:
    """Two sync generators are in their threads at the same time (they meet at a barrier)."""
    barrier = threading.Barrier(2)
    gens = [_Blocking(name="a", barrier=barrier), _Blocking(name="b", barrier=barrier)]
    report = await select_best_features(
        _frame(), target="y", generators=gens, selector=CorrelationSelector(), thread_limit=2
    )
    assert [run.outcome for run in report.generators] == ["ok", "ok"]


async def test_thread_limit_caps_the_generator_threads() -> None:
    """With thread_limit=1, sync generators never run two at once."""
    shared = _Blocking(name="a")
    gens = [shared, attrs.evolve(shared, name="b"), attrs.evolve(shared, name="c")]
    await select_best_features(
        _frame(), target="y", generators=gens, selector=CorrelationSelector(), thread_limit=1
    )
    assert shared.state["most"] == 1
    assert shared.state["returned"] == 3


async def test_cancelling_the_runner_waits_for_its_threads() -> None:
    """A cancelled run returns only after its generator threads have returned."""
    started, release = anyio.Event(), threading.Event()
    gen = _Blocking(started=started, release=release)
    outcome: list[str] = []

    async def run() -> None:
        with anyio.CancelScope() as scope:
            holder.append(scope)
            await select_best_features(
                _frame(), target="y", generators=[gen], selector=CorrelationSelector()
            )
        outcome.append("cancelled" if scope.cancelled_caught else "finished")
        outcome.append(f"returned={gen.state.get('returned', 0)}")

    holder: list[anyio.CancelScope] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await started.wait()
        holder[0].cancel()
        await anyio.wait_all_tasks_blocked()
        assert outcome == []  # still waiting for the thread
        release.set()
    assert outcome == ["cancelled", "returned=1"]


async def test_a_sync_generator_overriding_agenerate_counts_as_async() -> None:
    """The kind is discovered at run time: an overridden agenerate runs on the loop."""

    @attrs.frozen
    class OnLoop(SyncFeatureGenerator):
        name: str = "onloop"

        def generate(self, frame: pl.DataFrame) -> pl.DataFrame:
            return frame.select(pl.col("x").alias("same"))

        async def agenerate(self, frame: pl.DataFrame) -> pl.DataFrame:
            return self.generate(frame)

    report = await select_best_features(
        _frame(), target="y", generators=[OnLoop(), _Double()], selector=CorrelationSelector()
    )
    assert [run.kind for run in report.generators] == ["async", "thread"]


async def test_thread_start_times_exclude_the_wait_for_a_token() -> None:
    """Under thread_limit=1 the second generator's start is when its thread ran."""
    started, release = anyio.Event(), threading.Event()
    # whichever thread runs first sets started and waits; the other waits for the token
    first = _Blocking(name="a", started=started, release=release)
    second = attrs.evolve(first, name="b")
    reports: list[SelectionReport] = []

    async def run() -> None:
        reports.append(
            await select_best_features(
                _frame(),
                target="y",
                generators=[first, second],
                selector=CorrelationSelector(),
                thread_limit=1,
            )
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await started.wait()
        seen = time.monotonic()  # the run began before this
        await anyio.wait_all_tasks_blocked()
        mark = time.monotonic()  # the second thread cannot start before this
        release.set()
    earlier, later = sorted(reports[0].generators, key=lambda run: run.started)
    # began <= seen, and the later thread started after mark: started >= mark - seen
    assert later.started >= mark - seen
    assert later.started > earlier.started


async def test_generators_must_be_a_sequence() -> None:
    """A non-iterable generators argument raises TypeError naming it."""
    with pytest.raises(TypeError, match="generators must be a sequence"):
        await select_best_features(
            _frame(),
            target="y",
            generators=LagFeatures(),  # type: ignore[arg-type]
            selector=CorrelationSelector(),
        )


@attrs.frozen(eq=False)
class _Columns(FeatureGenerator):
    """An async generator returning copies of ``x`` under the given column names."""

    name: str
    columns: tuple[str, ...] = ("x",)
    ran: list[bool] = attrs.field(factory=list)

    async def agenerate(self, frame: pl.DataFrame) -> pl.DataFrame:
        self.ran.append(True)
        return frame.select(pl.col("x").alias(column) for column in self.columns)


async def test_prefixes_that_overlap_are_refused_before_anything_runs() -> None:
    """Names "a" and "a_" clash once prefixed ("a__" starts "a___"): ValueError, nothing runs."""
    first, second = _Columns(name="a", columns=("_z",)), _Columns(name="a_", columns=("z",))
    with pytest.raises(ValueError, match="clash"):
        await select_best_features(
            _frame(), target="y", generators=[first, second], selector=CorrelationSelector()
        )
    assert first.ran == []
    assert second.ran == []


async def test_an_empty_selection_still_gives_row_aligned_features() -> None:
    """When nothing is selected, report.features has no columns but the input's rows."""
    constant = pl.DataFrame({"x": [1.0, 1.0, 1.0, 1.0], "y": [2.0, 4.0, 6.0, 9.0]})
    report = await select_best_features(
        constant, target="y", generators=[_Columns(name="g")], selector=CorrelationSelector()
    )
    assert report.selection.names == ()
    assert report.features.shape == (4, 0)


@attrs.frozen(eq=False)
class _Stuck(FeatureGenerator):
    """An async generator that never finishes on its own."""

    name: str = "stuck"

    async def agenerate(self, frame: pl.DataFrame) -> pl.DataFrame:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


async def test_a_scope_timeout_is_a_skippable_generator_error() -> None:
    """Under ``scope(timeout=)`` a generator that times out is recorded and skipped."""
    fast = _Columns(name="fast", columns=("a",))
    with concur.scope(timeout=0.05):
        report = await select_best_features(
            _frame(),
            target="y",
            generators=[_Stuck(), fast],
            selector=CorrelationSelector(),
            k=1,
            on_error="skip",
        )
    outcomes = {run.name: (run.outcome, type(run.error)) for run in report.generators}
    assert outcomes == {"stuck": ("error", TimeoutError), "fast": ("ok", type(None))}


async def test_a_scope_timeout_fails_the_run_bare_under_fail() -> None:
    """Under ``scope(timeout=)`` and ``on_error="fail"`` the run raises a bare ``TimeoutError``."""
    with concur.scope(timeout=0.05), pytest.raises(TimeoutError):
        await select_best_features(
            _frame(),
            target="y",
            generators=[_Stuck(), _Columns(name="fast", columns=("a",))],
            selector=CorrelationSelector(),
            k=1,
        )
