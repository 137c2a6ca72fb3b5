"""The polars feature generators: lags, rolling statistics and interactions."""

from __future__ import annotations

import math

import attrs
import polars as pl
import pytest

from components import InteractionFeatures, LagFeatures, RollingFeatures


def _shuffled() -> pl.DataFrame:
    # two entities, rows out of order: per-entity work must follow the order column
    return pl.DataFrame(
        {
            "entity": ["a", "b", "a", "b", "a", "b"],
            "t": [2, 1, 0, 0, 1, 2],
            "x": [30.0, 200.0, 10.0, 100.0, 20.0, 300.0],
            "label": ["u", "v", "w", "x", "y", "z"],
        }
    )


def test_generators_construct_with_no_arguments_and_are_frozen() -> None:
    """Each polars generator has defaults and a per-class name, and cannot be changed."""
    for cls, name in (
        (LagFeatures, "lag"),
        (RollingFeatures, "rolling"),
        (InteractionFeatures, "interaction"),
    ):
        gen = cls()
        assert gen.name == name
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            gen.name = "other"  # type: ignore[misc]


def test_lags_follow_entity_and_order_and_stay_row_aligned() -> None:
    """A lag is the previous value of the same entity in order, in the input's row order."""
    out = LagFeatures(lags=1, entity="entity", order="t").generate(_shuffled())
    assert out.columns == ["lag__x_lag_1", "lag__x_diff_1"]
    assert out["lag__x_lag_1"].to_list() == [20.0, 100.0, None, None, 10.0, 200.0]
    assert out["lag__x_diff_1"].to_list() == [10.0, 100.0, None, None, 10.0, 100.0]


def test_lags_without_entity_use_row_order() -> None:
    """With no entity and no order, the whole frame is one series in row order."""
    frame = pl.DataFrame({"x": [1, 2, 4]})
    out = LagFeatures(lags=(1, 2), differences=False).generate(frame)
    assert out.to_dict(as_series=False) == {
        "lag__x_lag_1": [None, 1.0, 2.0],
        "lag__x_lag_2": [None, None, 1.0],
    }


def test_rolling_statistics_per_entity() -> None:
    """Rolling mean/std/min/max over a window are computed per entity, in order."""
    out = RollingFeatures(windows=2, entity="entity", order="t").generate(_shuffled())
    assert out["rolling__x_mean_2"].to_list() == [25.0, 150.0, None, None, 15.0, 250.0]
    assert out["rolling__x_min_2"].to_list() == [20.0, 100.0, None, None, 10.0, 200.0]
    assert out["rolling__x_max_2"].to_list() == [30.0, 200.0, None, None, 20.0, 300.0]
    std = out["rolling__x_std_2"].to_list()
    assert std[0] == pytest.approx(math.sqrt(50.0))
    assert std[1] == pytest.approx(math.sqrt(5000.0))
    assert std[2] is None


def test_interactions_guard_division_by_zero() -> None:
    """Ratios are null where the denominator is zero; products are plain."""
    frame = pl.DataFrame({"a": [1.0, 2.0, 3.0], "b": [2.0, 0.0, -1.0], "s": ["x", "y", "z"]})
    out = InteractionFeatures().generate(frame)
    assert out.to_dict(as_series=False) == {
        "interaction__a_mul_b": [2.0, 0.0, -3.0],
        "interaction__a_div_b": [0.5, None, -3.0],
    }


def test_entity_and_order_columns_are_not_inputs() -> None:
    """The entity and order columns are keys, never features."""
    frame = pl.DataFrame({"e": [1, 1], "t": [0, 1], "x": [1.0, 2.0], "y": [3.0, 4.0]})
    out = InteractionFeatures(entity="e", order="t", ratios=False).generate(frame)
    assert out.columns == ["interaction__x_mul_y"]


def test_no_numeric_input_gives_an_empty_row_aligned_frame() -> None:
    """A frame without numeric inputs yields no columns but the same number of rows."""
    frame = pl.DataFrame({"s": ["a", "b", "c"]})
    for gen in (LagFeatures(), RollingFeatures(), InteractionFeatures()):
        out = gen.generate(frame)
        assert out.shape == (3, 0)


def test_bad_configuration_and_columns_raise_clear_errors() -> None:
    """Bad fields and missing or non-numeric columns raise ValueError naming them."""
    with pytest.raises(ValueError, match="lags"):
        LagFeatures(lags=(0,))
    with pytest.raises(ValueError, match="windows"):
        RollingFeatures(windows=())
    with pytest.raises(ValueError, match="stats"):
        RollingFeatures(stats=("median",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        LagFeatures(name="")
    with pytest.raises(TypeError, match="column names"):
        LagFeatures(columns=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="windows"):
        RollingFeatures(windows="7")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lags"):
        LagFeatures(lags=2.5)  # type: ignore[arg-type]
    frame = _shuffled()
    with pytest.raises(ValueError, match="'nope'"):
        LagFeatures(columns=("nope",)).generate(frame)
    with pytest.raises(ValueError, match="not numeric"):
        RollingFeatures(columns="label").generate(frame)
    with pytest.raises(ValueError, match="entity column 'who'"):
        LagFeatures(entity="who").generate(frame)


async def test_agenerate_works_on_a_clone_in_a_thread() -> None:
    """The async face of a polars generator returns the same frame as the sync one."""
    frame = _shuffled()
    gen = LagFeatures(entity="entity", order="t")
    assert (await gen.agenerate(frame)).equals(gen.generate(frame))


def test_lags_and_rolling_on_interleaved_unsorted_entities_by_hand() -> None:
    """Lags, differences and rolling stats follow entity and order and keep row alignment."""
    frame = pl.DataFrame(
        {
            "e": [1, 2, 1, 2, 1, 2, 1],
            "t": [3, 2, 1, 1, 2, 3, 4],
            "x": [30.0, 200.0, 10.0, 100.0, 20.0, 300.0, 40.0],
        }
    )
    lags = LagFeatures(entity="e", order="t", lags=(1,)).generate(frame)
    assert lags["lag__x_lag_1"].to_list() == [20.0, 100.0, None, None, 10.0, 200.0, 30.0]
    assert lags["lag__x_diff_1"].to_list() == [10.0, 100.0, None, None, 10.0, 100.0, 10.0]
