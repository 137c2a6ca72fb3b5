"""The selection runner: every generator concurrently, then the selector."""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Final, Literal, TypeAlias

import anyio
import polars as pl

import concur

from ._common import check_int, check_number
from ._interfaces import (
    FeatureGenerator,
    FeatureSelector,
    Selection,
    SyncFeatureGenerator,
    thread_start_hook,
)
from ._polars import AutoregressiveFeatures
from ._report import GeneratorRun, Kind, SelectionReport

__all__ = ["OnError", "select_best_features", "select_best_features_sync", "usable_cpus"]

OnError: TypeAlias = Literal["fail", "skip"]
"""What the runner does when a generator fails."""

ProgressHook: TypeAlias = Callable[[int, FeatureGenerator, GeneratorRun | None], None]

# Private hook for the command line's progress display: called with (index, generator, None)
# when a generator starts and (index, generator, run) when it ends, on the event loop.
progress_hook: ContextVar[ProgressHook | None] = ContextVar(
    "components.progress_hook", default=None
)

_ON_ERROR: Final = ("fail", "skip")


def usable_cpus() -> int:
    """The number of CPUs this process may run on (its affinity mask where there is one)."""
    sched_getaffinity = getattr(os, "sched_getaffinity", None)
    if sched_getaffinity is not None:
        return max(1, len(sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def kind_of(generator: FeatureGenerator) -> Kind:
    """``"thread"`` if the generator's work runs in a worker thread, else ``"async"``."""
    if isinstance(generator, SyncFeatureGenerator) and (
        type(generator).agenerate is SyncFeatureGenerator.agenerate
    ):
        return "thread"
    return "async"


def reads_target(generator: FeatureGenerator, target: str) -> bool:
    """Whether the runner hands *generator* the target column: only an
    :class:`AutoregressiveFeatures` of the run's *target* (its features are the target's
    strictly earlier values); every other generator gets the frame without it."""
    return isinstance(generator, AutoregressiveFeatures) and generator.target == target


def _check_arguments(
    frame: object,
    target: object,
    generators: Sequence[FeatureGenerator],
    selector: object,
    k: object,
    thread_limit: object,
    on_error: object,
    timeout: object,
) -> None:
    if not isinstance(frame, pl.DataFrame):
        raise TypeError(f"frame must be a polars DataFrame, got {type(frame).__name__}")
    if not isinstance(target, str):
        raise TypeError(f"target must be a column name (str), got {type(target).__name__}")
    if target not in frame.columns:
        raise ValueError(f"target: no column {target!r} in the frame (columns: {frame.columns})")
    check_int(k, "k")
    check_int(thread_limit, "thread_limit", optional=True)
    if on_error not in _ON_ERROR:
        raise ValueError(f'on_error must be "fail" or "skip", got {on_error!r}')
    check_number(timeout, "timeout", optional=True, unit="seconds")
    if not isinstance(selector, FeatureSelector):
        raise TypeError(f"selector must be a FeatureSelector, got {type(selector).__name__}")
    if not generators:
        raise ValueError("generators must not be empty")
    names: list[str] = []
    for generator in generators:
        if not isinstance(generator, FeatureGenerator):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(
                f"generators must be FeatureGenerator objects, got {type(generator).__name__}"
            )
        name = getattr(generator, "name", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"generators: {generator!r} has no name (a non-empty str)")
        names.append(name)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(
                f"generators: two generators are named {name!r}; give each a unique name="
            )
        seen.add(name)
    # every column of a generator starts with its prefix f"{name}__", so two generators'
    # columns can clash exactly when one prefix starts the other ("a__" starts "a___",
    # the prefix of "a_", as it starts "a__b__")
    for name in names:
        for other in names:
            if other != name and f"{other}__".startswith(f"{name}__"):
                raise ValueError(
                    f"generators: the names {name!r} and {other!r} could clash after "
                    f"prefixing ({name + '__'!r} starts {other + '__'!r}); rename one"
                )


def _limiter(thread_limit: int | None) -> tuple[anyio.CapacityLimiter, bool]:
    """The limiter of the run, and whether it is the runner's own default one."""
    if thread_limit is not None:
        return anyio.CapacityLimiter(thread_limit), False
    settings = concur.current_settings()
    if settings.limiter is not None:
        return settings.current_limiter(), False
    return anyio.CapacityLimiter(usable_cpus()), True


def _prefix(generator: FeatureGenerator, result: object, height: int) -> pl.DataFrame:
    """Check a generator's result and prefix its bare column names."""
    name = generator.name
    if not isinstance(result, pl.DataFrame):
        raise TypeError(
            f"generator {name!r} returned {type(result).__name__}, not a polars DataFrame"
        )
    if result.height != height:
        raise ValueError(
            f"generator {name!r} returned {result.height} rows for {height} input rows; "
            "a generator's result must be row-aligned with its input"
        )
    prefix = f"{name}__"
    renamed = {c: c if c.startswith(prefix) else prefix + c for c in result.columns}
    if len(set(renamed.values())) != len(renamed):
        raise ValueError(
            f"generator {name!r} returned columns that clash after prefixing: {result.columns}"
        )
    return result.rename(renamed)


async def select_best_features(
    frame: pl.DataFrame,
    *,
    target: str,
    generators: Sequence[FeatureGenerator],
    selector: FeatureSelector,
    k: int = 20,
    thread_limit: int | None = None,
    on_error: OnError = "fail",
    timeout: float | None = None,
) -> SelectionReport:
    """Run every generator concurrently on *frame*, then select the best *k* features.

    The generators receive *frame* without the *target* column (the one exception is an
    :class:`AutoregressiveFeatures` whose ``target`` is *target*: it receives the column,
    and uses only rows strictly before each row); sync ones
    (:class:`SyncFeatureGenerator`) run in worker threads, each on a clone of it, async
    ones as tasks on the event loop, all in one :class:`concur.TaskGroup`. Bare output
    columns are prefixed ``f"{name}__"``. The selector then runs on the union of the
    features, with the target as a :class:`polars.Series`.

    Args:
        frame: the input data.
        target: the name of the column to predict.
        generators: the feature generators, with unique names.
        selector: the feature selector.
        k: the most features to select.
        thread_limit: run at most this many thread calls at once. None means the limiter
            of the enclosing :func:`concur.scope` or :class:`concur.TaskGroup` if one was
            set, else one token per usable CPU (never anyio's default of 40) for the sync
            generators and the selector, plus one token of its own for the short thread
            calls async generators make (so they never wait behind a long generator).
        on_error: ``"fail"``: the first failing generator cancels the others and its
            exception propagates as it is. ``"skip"``: failures are recorded in the report
            and the others go on.
        timeout: seconds bounding the whole run, generators and selection. An enclosing
            :func:`concur.scope`'s per-call ``timeout`` bounds each generator instead: one
            that times out fails like any other generator (recorded, and skipped under
            ``on_error="skip"``).

    Returns:
        The :class:`SelectionReport`.

    Cancellation: the generators still running are cancelled (a thread call is waited
    for until its function returns, so no thread outlives the call; DuckDB cursors and
    HTTP clients are closed), then the cancellation propagates. The timeout is such a
    cancellation, raised as ``TimeoutError``.

    Raises:
        ValueError: ``k < 1``, an unknown *on_error*, ``thread_limit < 1``, a missing
            *target* column, no generators, or generator names that clash (before anything
            runs); a generator result that is not row-aligned or whose names clash.
        TypeError: an argument of the wrong type, or a generator that did not return a
            polars DataFrame.
        ExceptionGroup: ``on_error="skip"`` and every generator failed
            (``"all feature generators failed"``); or two or more generators failed at
            once under ``"fail"``.
        TimeoutError: *timeout* expired.
    """
    try:
        generators = tuple(generators)
    except TypeError:
        raise TypeError(
            "generators must be a sequence of FeatureGenerator objects, "
            f"got {type(generators).__name__}"
        ) from None
    _check_arguments(frame, target, generators, selector, k, thread_limit, on_error, timeout)
    limiter, own = _limiter(thread_limit)
    # With the default limiter, the async generators' own short thread calls (a join, a
    # parse) get one token of their own, so they never queue behind long generator threads.
    hops = anyio.CapacityLimiter(1) if own else None
    if timeout is None:
        return await _run(frame, target, generators, selector, k, limiter, hops, on_error)
    with anyio.fail_after(timeout):
        return await _run(frame, target, generators, selector, k, limiter, hops, on_error)


def select_best_features_sync(
    frame: pl.DataFrame,
    *,
    target: str,
    generators: Sequence[FeatureGenerator],
    selector: FeatureSelector,
    k: int = 20,
    thread_limit: int | None = None,
    on_error: OnError = "fail",
    timeout: float | None = None,
    backend: Literal["asyncio", "trio"] = "asyncio",
) -> SelectionReport:
    """:func:`select_best_features` from synchronous code, through :func:`concur.run`.

    Works in a script (it runs an event loop of *backend* in this thread), in a notebook
    cell or other sync code called while a loop runs in this thread (the run happens on a
    fresh loop in a background thread, on a clone of *frame*, and this thread blocks until
    it is done), and in a worker thread started by :func:`concur.to_thread` (it runs on the
    parent loop). The arguments and errors are those of :func:`select_best_features`.

    Blocks until the run is done; Ctrl-C behaves as documented for :func:`concur.run`.
    """
    run = functools.partial(
        select_best_features,
        frame.clone() if isinstance(frame, pl.DataFrame) else frame,  # pyright: ignore[reportUnnecessaryIsInstance]
        target=target,
        generators=tuple(generators),
        selector=selector,
        k=k,
        thread_limit=thread_limit,
        on_error=on_error,
        timeout=timeout,
    )
    return concur.run(run, backend=backend)


async def _run(
    frame: pl.DataFrame,
    target: str,
    generators: tuple[FeatureGenerator, ...],
    selector: FeatureSelector,
    k: int,
    limiter: anyio.CapacityLimiter,
    hops: anyio.CapacityLimiter | None,
    on_error: OnError,
) -> SelectionReport:
    inputs = frame.drop(target)
    height = inputs.height
    runs: list[GeneratorRun | None] = [None] * len(generators)
    outputs: list[pl.DataFrame | None] = [None] * len(generators)
    hook = progress_hook.get()
    cancelled_exc = anyio.get_cancelled_exc_class()
    began = time.monotonic()

    async def run_one(index: int, generator: FeatureGenerator) -> None:
        kind = kind_of(generator)
        started = time.monotonic() - began
        thread_started: list[float] = []
        if hook is not None:
            hook(index, generator, None)

        def record(
            outcome: Literal["ok", "error", "cancelled"],
            error: BaseException | None,
            result: pl.DataFrame | None,
        ) -> None:
            run = GeneratorRun(
                name=generator.name,
                kind=kind,
                started=thread_started[0] - began if thread_started else started,
                ended=time.monotonic() - began,
                rows=0 if result is None else result.height,
                columns=0 if result is None else result.width,
                outcome=outcome,
                error=error,
            )
            runs[index] = run
            if hook is not None:
                hook(index, generator, run)

        try:
            # concur.call applies an enclosing scope's per-call timeout here, inside run_one,
            # so a generator that times out is an error like any other (recorded; skipped
            # under on_error="skip"); the task group itself applies none (timeout=math.inf)
            out = await concur.call(call, kind, generator, thread_started)
            result = _prefix(generator, out, height)
        except cancelled_exc:
            record("cancelled", None, None)
            raise
        except Exception as exc:
            record("error", exc, None)
            if on_error == "fail":
                raise
            return
        outputs[index] = result
        record("ok", None, result)

    async def call(
        kind: Kind, generator: FeatureGenerator, thread_started: list[float]
    ) -> pl.DataFrame:
        given = frame if reads_target(generator, target) else inputs
        if kind == "thread":
            # the generator's own agenerate, which tells the time its thread really
            # started (after waiting for a limiter token), for the timeline
            token = thread_start_hook.set(lambda: thread_started.append(time.monotonic()))
            try:
                return await generator.agenerate(given)
            finally:
                thread_start_hook.reset(token)
        if hops is None:
            return await generator.agenerate(given.clone())
        with concur.scope(limiter=hops):
            return await generator.agenerate(given.clone())

    # async generators first: their waits overlap the thread work from the start
    schedule = sorted(range(len(generators)), key=lambda i: kind_of(generators[i]) == "thread")
    with concur.scope(limiter=limiter):
        try:
            async with concur.TaskGroup(name="select_best_features", timeout=math.inf) as tg:
                for index in schedule:
                    handle: anyio.TaskHandle[None] = tg.spawn(
                        run_one, index, generators[index], name=generators[index].name
                    )
                    del handle
        except ExceptionGroup as group:
            raise concur.collapse(group) from None
        done = [run for run in runs if run is not None]
        frames = [out for out in outputs if out is not None]
        if not frames:
            errors = [run.error for run in done if isinstance(run.error, Exception)]
            raise ExceptionGroup("all feature generators failed", errors)
        features = pl.concat(frames, how="horizontal") if len(frames) > 1 else frames[0]
        selection = await selector.aselect(features, frame.get_column(target), k)
    _check_selection(selector, selection, features, k)
    # select() of no columns gives a 0 x 0 frame: keep the rows, so it stays row-aligned
    selected = features.select(selection.names) if selection.names else pl.DataFrame(height=height)
    return SelectionReport(
        features=selected,
        selection=selection,
        generators=done,
    )


def _check_selection(
    selector: FeatureSelector, selection: object, features: pl.DataFrame, k: int
) -> None:
    name = getattr(selector, "name", type(selector).__name__)
    if not isinstance(selection, Selection):
        raise TypeError(f"selector {name!r} returned {type(selection).__name__}, not a Selection")
    unknown = [c for c in selection.names if c not in features.columns]
    if unknown:
        raise ValueError(f"selector {name!r} selected columns that are not features: {unknown}")
    if len(selection.names) > k:
        raise ValueError(
            f"selector {name!r} selected {len(selection.names)} features, more than k={k}"
        )
