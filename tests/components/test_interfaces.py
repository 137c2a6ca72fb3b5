"""The component interfaces: the seed pattern, and the Selection value."""

from __future__ import annotations

import threading

import anyio
import anyio.from_thread
import attrs
import polars as pl
import pytest

import concur
from components import (
    FeatureGenerator,
    FeatureSelector,
    Selection,
    SyncFeatureGenerator,
    SyncFeatureSelector,
)


@attrs.frozen
class _Recorder(SyncFeatureGenerator):
    limiter: anyio.CapacityLimiter = attrs.field(eq=False)
    name: str = "recorder"
    seen: list[tuple[int, float]] = attrs.field(factory=list, eq=False)

    def generate(self, frame: pl.DataFrame) -> pl.DataFrame:
        borrowed = anyio.from_thread.run_sync(lambda: self.limiter.borrowed_tokens)
        self.seen.append((threading.get_ident(), borrowed))
        return frame.select((pl.col("x") * 2).alias("double"))


@attrs.frozen
class _Picker(SyncFeatureSelector):
    name: str = "picker"

    def select(self, features: pl.DataFrame, target: pl.Series, k: int) -> Selection:
        return Selection(features.columns[:k], dict.fromkeys(features.columns, 1.0))


async def test_sync_generator_runs_generate_in_a_worker_thread_under_the_ambient_limiter() -> None:
    """``SyncFeatureGenerator.agenerate`` runs ``generate`` in a thread holding a token."""
    limiter = anyio.CapacityLimiter(1)
    gen = _Recorder(limiter)
    with concur.scope(limiter=limiter):
        out = await gen.agenerate(pl.DataFrame({"x": [1, 2]}))
    assert out.to_dict(as_series=False) == {"double": [2, 4]}
    ((ident, borrowed),) = gen.seen
    assert ident != threading.get_ident()
    assert borrowed == 1


async def test_sync_selector_runs_select_in_a_worker_thread() -> None:
    """``SyncFeatureSelector.aselect`` returns what ``select`` returned, from a thread."""
    selection = await _Picker().aselect(pl.DataFrame({"a": [1], "b": [2]}), pl.Series([0]), 1)
    assert selection == Selection(("a",), {"a": 1.0, "b": 1.0})


def test_interfaces_are_abstract() -> None:
    """The four interfaces cannot be instantiated without their methods."""
    for interface in (
        FeatureGenerator,
        SyncFeatureGenerator,
        FeatureSelector,
        SyncFeatureSelector,
    ):
        with pytest.raises(TypeError):
            interface()  # type: ignore[abstract]


def test_sync_interfaces_keep_the_seed_pattern() -> None:
    """Each Sync subclass adds the sync verb and overrides the async one."""
    assert SyncFeatureGenerator.__abstractmethods__ == frozenset({"generate"})
    assert SyncFeatureSelector.__abstractmethods__ == frozenset({"select"})
    assert SyncFeatureGenerator.agenerate is not FeatureGenerator.agenerate
    assert SyncFeatureSelector.aselect is not FeatureSelector.aselect


def test_selection_is_a_frozen_value_with_read_only_scores() -> None:
    """A Selection cannot be changed, and its scores mapping is read-only."""
    selection = Selection(["a", "b"], {"a": 2, "b": 1.5, "c": 0})
    assert selection.names == ("a", "b")
    assert dict(selection.scores) == {"a": 2.0, "b": 1.5, "c": 0.0}
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        selection.names = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        selection.scores["a"] = 3.0  # type: ignore[index]
    assert hash(selection) == hash(Selection(("a", "b"), {"c": 0.0, "b": 1.5, "a": 2.0}))


def test_selection_refuses_names_without_scores_and_duplicates() -> None:
    """Every chosen name needs a score, and names are unique."""
    with pytest.raises(ValueError, match="no score"):
        Selection(("a",), {})
    with pytest.raises(ValueError, match="unique"):
        Selection(("a", "a"), {"a": 1.0})
