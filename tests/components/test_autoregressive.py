"""AutoregressiveFeatures: the target's own past, strictly before each row, per entity."""

from __future__ import annotations

import random

import attrs
import polars as pl
import pytest

from components import (
    AutoregressiveFeatures,
    CorrelationSelector,
    FeatureGenerator,
    LagFeatures,
    SyncFeatureGenerator,
    select_best_features,
)


def _prices(seed: int = 0, months: int = 24) -> pl.DataFrame:
    """Prices of three symbols per month, rows shuffled: the order column decides."""
    rng = random.Random(seed)
    rows: list[tuple[str, int, float]] = []
    for symbol, price in (("AAA", 100.0), ("BBB", 50.0), ("CCC", 10.0)):
        for month in range(months):
            price *= 1 + rng.gauss(0.01, 0.05)
            rows.append((symbol, month, round(price, 4)))
    rng.shuffle(rows)
    return pl.DataFrame(rows, schema=["symbol", "month", "price"], orient="row")


def _generator(**fields: object) -> AutoregressiveFeatures:
    keys: dict[str, object] = {"target": "price", "entity": "symbol", "order": "month"}
    return AutoregressiveFeatures(**(keys | fields))  # type: ignore[arg-type]


def test_lags_and_windows_end_the_row_before() -> None:
    """``y_lag_n`` is n rows earlier; ``y_s_w`` covers rows t-w..t-1, per entity, in order."""
    frame = pl.DataFrame(
        {
            "s": ["a", "b", "a", "b", "a", "b", "a"],
            "m": [2, 1, 0, 0, 1, 2, 3],
            "p": [3.0, 20.0, 1.0, 10.0, 2.0, 30.0, 4.0],
        }
    )
    gen = AutoregressiveFeatures(
        target="p", entity="s", order="m", lags=(1, 2), windows=2, stats=("mean", "max")
    )
    out = gen.generate(frame)
    assert out.to_dict(as_series=False) == {
        "autoregressive__p_lag_1": [2.0, 10.0, None, None, 1.0, 20.0, 3.0],
        "autoregressive__p_lag_2": [1.0, None, None, None, None, 10.0, 2.0],
        "autoregressive__p_mean_2": [1.5, None, None, None, None, 15.0, 2.5],
        "autoregressive__p_max_2": [2.0, None, None, None, None, 20.0, 3.0],
    }


def test_defaults_and_row_order_without_keys() -> None:
    """By default: lags 1-3 and mean/std/min/max over 3 and 7 rows, the frame in row order."""
    frame = pl.DataFrame({"y": [float(i * i) for i in range(10)]})
    out = AutoregressiveFeatures(target="y").generate(frame)
    assert out.columns == [
        "autoregressive__y_lag_1",
        "autoregressive__y_lag_2",
        "autoregressive__y_lag_3",
        *(f"autoregressive__y_{s}_{w}" for w in (3, 7) for s in ("mean", "std", "min", "max")),
    ]
    assert out["autoregressive__y_lag_1"].to_list() == [None, *(float(i * i) for i in range(9))]
    assert out["autoregressive__y_max_3"].to_list()[:5] == [None, None, None, 4.0, 9.0]
    assert out.height == 10


def test_perturbing_the_target_at_a_step_changes_nothing_at_or_before_it() -> None:
    """No leakage: changing the target at step t of an entity leaves every feature of that
    entity at steps <= t, and of every other entity, unchanged (checked for every row)."""
    frame = _prices(seed=3, months=12)
    gen = _generator(lags=(1, 2, 5), windows=(2, 4))
    base = gen.generate(frame)
    features = base.columns
    changed_later = 0
    for row in range(frame.height):
        symbol, month = frame["symbol"][row], frame["month"][row]
        perturbed = frame.with_columns(
            pl.when(pl.int_range(pl.len()) == row)
            .then(pl.col("price") * 1000 + 7)
            .otherwise(pl.col("price"))
            .alias("price")
        )
        out = gen.generate(perturbed)
        same = (pl.col("symbol") != symbol) | (pl.col("month") <= month)
        mask = frame.select(same).to_series()
        assert out.filter(mask).equals(base.filter(mask)), (symbol, month)
        # not vacuous: the next step of the same entity sees the change
        later = frame.select((pl.col("symbol") == symbol) & (pl.col("month") == month + 1))
        nxt = later.to_series()
        if nxt.any():
            assert not out.filter(nxt).equals(base.filter(nxt))
            changed_later += 1
    assert changed_later == 3 * 11
    assert len(features) == 3 + 2 * 4


def test_rows_sharing_a_step_are_refused() -> None:
    """Two rows of one entity at the same order value would see each other: ValueError."""
    frame = _prices().with_columns(pl.lit(1).alias("month"))
    with pytest.raises(ValueError, match=r"share their step.*symbol='[A-C]{3}', month=1"):
        _generator().generate(frame)
    with pytest.raises(ValueError, match="share their step"):
        _generator(entity=None).generate(_prices())


def test_bad_fields_and_frames_raise_clear_errors() -> None:
    """Bad fields, and a missing or non-numeric target, raise errors naming them."""
    with pytest.raises(TypeError, match="target"):
        AutoregressiveFeatures(target=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target must not be empty"):
        AutoregressiveFeatures(target="")
    with pytest.raises(ValueError, match="lags"):
        AutoregressiveFeatures(target="y", lags=0)
    with pytest.raises(ValueError, match="stats"):
        AutoregressiveFeatures(target="y", stats=("median",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="order column cannot be the target"):
        AutoregressiveFeatures(target="y", order="y")
    with pytest.raises(ValueError, match="target column 'price' is not in"):
        _generator().generate(_prices().drop("price"))
    with pytest.raises(ValueError, match="not numeric"):
        _generator().generate(_prices().with_columns(pl.col("price").cast(pl.String)))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        _generator().target = "other"  # type: ignore[misc]


@attrs.frozen
class _Seen(SyncFeatureGenerator):
    name: str = "seen"
    columns: list[list[str]] = attrs.field(factory=list, eq=False)

    def generate(self, frame: pl.DataFrame) -> pl.DataFrame:
        self.columns.append(frame.columns)
        return pl.DataFrame(height=frame.height)


async def test_the_runner_hands_the_target_only_to_the_autoregressive_generator() -> None:
    """In select_best_features only the autoregressive generator of the run's target sees
    the target column; a price-only series gets features and a selection."""
    seen = _Seen()
    report = await select_best_features(
        _prices(),
        target="price",
        generators=[_generator(), seen, LagFeatures(entity="symbol", order="month")],
        selector=CorrelationSelector(),
        k=3,
    )
    assert seen.columns == [["symbol", "month"]]
    assert report.selection.names
    assert all(name.startswith("autoregressive__price_") for name in report.selection.names)
    assert report.selection.scores["autoregressive__price_lag_1"] > 0.9


async def test_an_autoregressive_generator_of_another_column_is_an_ordinary_one() -> None:
    """With a ``target`` other than the run's, it makes the past of that feature column."""
    frame = _prices().with_columns((pl.col("price") * 2).alias("double"))
    report = await select_best_features(
        frame,
        target="double",
        generators=[_generator(target="price")],
        selector=CorrelationSelector(),
    )
    assert "autoregressive__price_lag_1" in report.selection.scores
    assert not any("double" in name for name in report.selection.scores)


def test_it_is_a_final_sync_generator() -> None:
    """The exception to "no target" cannot be inherited by a subclass."""
    assert issubclass(AutoregressiveFeatures, FeatureGenerator)
    assert getattr(AutoregressiveFeatures, "__final__", False)
