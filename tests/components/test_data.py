"""The built-in seeded data set."""

from __future__ import annotations

import polars as pl
import pytest

from components import DEFAULT_ROWS, PLANTED_FEATURES, TARGET, make_dataset


def test_default_size_is_the_stated_quick_start_size() -> None:
    """The built-in data set has 100,000 rows by default (the quick start's stated size)."""
    assert DEFAULT_ROWS == 100_000
    assert make_dataset().height == DEFAULT_ROWS


def test_dataset_has_entity_order_noise_and_target_columns() -> None:
    """The frame has the documented columns, types and size."""
    frame = make_dataset(5_000, entities=10)
    assert frame.columns == [
        "entity",
        "order",
        "x1",
        "x2",
        "x3",
        "x4",
        "noise1",
        "noise2",
        TARGET,
    ]
    assert frame.height == 5_000
    assert frame.schema["entity"] == pl.Int32
    assert frame["entity"].n_unique() == 10
    assert frame.filter(pl.col("entity") == 3)["order"].to_list() == list(range(500))
    assert frame[TARGET].null_count() == 0
    assert len(PLANTED_FEATURES) == 3


def test_dataset_is_deterministic_per_seed() -> None:
    """The same seed gives the same frame; another seed gives another one."""
    assert make_dataset(1_000, seed=3).equals(make_dataset(1_000, seed=3))
    assert not make_dataset(1_000, seed=3).equals(make_dataset(1_000, seed=4))


def test_dataset_refuses_bad_sizes() -> None:
    """rows and entities below 1 raise ValueError naming them; a float raises TypeError."""
    with pytest.raises(ValueError, match="rows"):
        make_dataset(0)
    with pytest.raises(ValueError, match="entities"):
        make_dataset(10, entities=0)
    with pytest.raises(TypeError, match="rows"):
        make_dataset(10.5)  # type: ignore[arg-type]
