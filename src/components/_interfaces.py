"""The component interfaces: async ABCs and their ``Sync`` twins (the seed pattern).

Each interface is an async ABC whose methods are named ``a<verb>``; its ``Sync<Interface>``
subclass adds an abstract sync method ``<verb>`` with the same signature and overrides
``a<verb>`` to run it in a worker thread through :func:`concur.to_thread`, so the ambient
limiter, handoff policy and hard thread cap apply.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import TYPE_CHECKING, final

import attrs

import concur

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "FeatureGenerator",
    "FeatureSelector",
    "Selection",
    "SyncFeatureGenerator",
    "SyncFeatureSelector",
]


# Private hook for the runner's timeline: when set, SyncFeatureGenerator.agenerate calls it
# in the worker thread just before generate() starts (after any wait for a limiter token).
thread_start_hook: ContextVar[Callable[[], object] | None] = ContextVar(
    "components.thread_start_hook", default=None
)


def _as_names(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(names)


def _as_chance(chance: float | None) -> float | None:
    return None if chance is None else float(chance)


def _freeze_scores(scores: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType({str(key): float(value) for key, value in scores.items()})


@final
@attrs.frozen(eq=False)
class Selection:
    """What a selector chose: feature names in rank order and a score per candidate.

    Attributes:
        names: the chosen column names, best first.
        scores: one score per scored candidate column (chosen or not); higher is better.
        unsupported: the candidates not scored because they share too few non-missing
            rows with the target (the selector's ``min_rows``), in column order.
        chance: the score a candidate had to exceed to count as more than chance, for a
            selector that estimates one (None otherwise). When it is set and ``names`` is
            empty, no feature beat chance.
    """

    names: tuple[str, ...] = attrs.field(converter=_as_names)
    scores: Mapping[str, float] = attrs.field(converter=_freeze_scores)
    unsupported: tuple[str, ...] = attrs.field(default=(), converter=_as_names, kw_only=True)
    chance: float | None = attrs.field(default=None, converter=_as_chance, kw_only=True)

    def __attrs_post_init__(self) -> None:
        missing = [name for name in self.names if name not in self.scores]
        if missing:
            raise ValueError(f"Selection: names {missing!r} have no score in scores")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"Selection: names must be unique, got {self.names!r}")
        scored = [name for name in self.unsupported if name in self.scores]
        if scored:
            raise ValueError(f"Selection: unsupported names {scored!r} have a score in scores")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Selection):
            return NotImplemented
        return (
            self.names == other.names
            and dict(self.scores) == dict(other.scores)
            and self.unsupported == other.unsupported
            and self.chance == other.chance
        )

    def __hash__(self) -> int:
        return hash((self.names, tuple(sorted(self.scores.items())), self.unsupported, self.chance))


class FeatureGenerator(ABC):
    """Makes new feature columns from a frame.

    Implementations are frozen attrs classes with a ``name`` field that has a per-class
    default; the runner prefixes bare output columns with ``f"{name}__"``.
    """

    __slots__ = ()

    name: str

    @abstractmethod
    async def agenerate(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Return new feature columns computed from *frame*.

        Implementer's contract: return a frame with exactly ``frame.height`` rows,
        row-aligned with *frame* (row ``i`` of the result describes row ``i`` of the input),
        holding only the new columns, named either bare or already prefixed
        ``f"{self.name}__"``. Do not modify *frame* or any shared state: the call must be
        repeatable and safe to run concurrently with other calls on the same object. On
        failure raise; nothing must be left open. When cancelled, release what the call
        opened and let the cancellation propagate (never swallow it).
        """


class SyncFeatureGenerator(FeatureGenerator):
    """A feature generator whose work is sync (polars, DuckDB): it runs in a thread."""

    __slots__ = ()

    @abstractmethod
    def generate(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Return new feature columns computed from *frame* (blocking).

        Same contract as :meth:`FeatureGenerator.agenerate`. It runs in a worker thread on
        a clone of the caller's frame, possibly concurrently with other calls on the same
        object: touch no shared mutable state. Long work may call
        :func:`concur.check_cancelled` between steps to stop early when cancelled.
        """

    @override
    async def agenerate(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Run :meth:`generate` in a worker thread through :func:`concur.to_thread`.

        The frame reaches the thread as a clone, under the ambient limiter.

        Cancellation: the caller waits for :meth:`generate` to return (it is not
        abandoned), then the cancellation propagates; the limiter token is held until then.
        """
        hook = thread_start_hook.get()
        if hook is None:
            return await concur.to_thread(self.generate, frame)
        return await concur.to_thread(_after(hook, self.generate), frame)


def _after(
    hook: Callable[[], object], generate: Callable[[pl.DataFrame], pl.DataFrame]
) -> Callable[[pl.DataFrame], pl.DataFrame]:
    def generate_after_hook(frame: pl.DataFrame) -> pl.DataFrame:
        hook()
        return generate(frame)

    return generate_after_hook


class FeatureSelector(ABC):
    """Chooses the best *k* features for predicting a target."""

    __slots__ = ()

    name: str

    @abstractmethod
    async def aselect(self, features: pl.DataFrame, target: pl.Series, k: int) -> Selection:
        """Score the columns of *features* against *target* and choose at most *k*.

        Implementer's contract: *target* has ``features.height`` values, row-aligned.
        Return a :class:`Selection` whose ``names`` are at most *k* columns of *features*,
        best first, whose ``scores`` hold one finite score per candidate it scored, and
        whose ``unsupported`` lists the candidates it did not score for lack of rows
        shared with the target. Nulls, NaN and constant columns must not make it fail. Do
        not modify the inputs. When cancelled, let the cancellation propagate.
        """


class SyncFeatureSelector(FeatureSelector):
    """A feature selector whose work is sync: it runs in a worker thread."""

    __slots__ = ()

    @abstractmethod
    def select(self, features: pl.DataFrame, target: pl.Series, k: int) -> Selection:
        """Score and choose features (blocking); same contract as :meth:`aselect`.

        It runs in a worker thread on clones of the caller's frame and series.
        """

    @override
    async def aselect(self, features: pl.DataFrame, target: pl.Series, k: int) -> Selection:
        """Run :meth:`select` in a worker thread through :func:`concur.to_thread`.

        Cancellation: the caller waits for :meth:`select` to return, then the cancellation
        propagates; the limiter token is held until then.
        """
        return await concur.to_thread(self.select, features, target, k)
