"""The feature selectors: correlation with redundancy pruning, and mutual information."""

from __future__ import annotations

import math

import polars as pl
import pytest

from components import CorrelationSelector, MutualInformationSelector, make_dataset


def _features() -> tuple[pl.DataFrame, pl.Series]:
    data = make_dataset(4_000, entities=4, seed=1)
    x1, x2, noise = data["x1"], data["x2"], data["noise1"]
    target = (2 * x1 + x2 + 0.1 * noise).alias("y")
    features = pl.DataFrame(
        {
            "strong": x1,
            "strong_copy": x1 * 3 + 1,
            "medium": x2,
            "noise": noise,
            "constant": [1.0] * data.height,
            "all_null": pl.Series([None] * data.height, dtype=pl.Float64),
            "nan": [math.nan] * data.height,
            "text": ["a"] * data.height,
        }
    )
    return features, target


def test_correlation_ranks_and_prunes_redundant_features() -> None:
    """The best feature comes first, its rescaled copy is dropped, then the next best."""
    features, target = _features()
    selection = CorrelationSelector().select(features, target, 3)
    # the copy scores the same (up to rounding): exactly one of the two is kept
    assert selection.names[0] in {"strong", "strong_copy"}
    assert selection.names[1] == "medium"
    assert {"strong", "strong_copy"} - set(selection.names)
    assert selection.scores["strong"] > selection.scores["medium"] > selection.scores["noise"]


def test_correlation_scores_every_numeric_candidate_without_crashing_on_edge_cases() -> None:
    """Constant, all-null and all-NaN columns score 0; non-numeric ones are not candidates."""
    features, target = _features()
    selection = CorrelationSelector().select(features, target, 20)
    assert set(selection.scores) == set(features.columns) - {"text"}
    assert selection.scores["constant"] == 0.0
    assert selection.scores["all_null"] == 0.0
    assert selection.scores["nan"] == 0.0
    assert "constant" not in selection.names
    assert all(math.isfinite(v) for v in selection.scores.values())


def test_correlation_without_pruning_keeps_copies() -> None:
    """With max_correlation=1 redundant copies are kept."""
    features, target = _features()
    selection = CorrelationSelector(max_correlation=1.0).select(features, target, 2)
    assert set(selection.names) == {"strong", "strong_copy"}


def test_nulls_in_a_feature_use_the_rows_present() -> None:
    """A feature with some nulls and NaNs is scored on the rows where it is present."""
    features = pl.DataFrame({"x": [1.0, 2.0, None, 4.0, math.nan, 6.0]})
    target = pl.Series([2.0, 4.0, 100.0, 8.0, -50.0, 12.0])
    selection = CorrelationSelector().select(features, target, 1)
    assert selection.scores["x"] == pytest.approx(1.0)


def test_mutual_information_ranks_informative_features_first() -> None:
    """Binned mutual information puts the informative features above noise and constants."""
    features, target = _features()
    selection = MutualInformationSelector().select(features, target, 2)
    assert set(selection.names) <= {"strong", "strong_copy"}
    assert selection.scores["medium"] > selection.scores["noise"]
    assert selection.scores["constant"] == 0.0
    assert selection.scores["all_null"] == 0.0
    assert selection.scores["nan"] == 0.0


async def test_selectors_run_in_threads_through_aselect() -> None:
    """``aselect`` gives the same selection as ``select``."""
    features, target = _features()
    for selector in (CorrelationSelector(), MutualInformationSelector(bins=8)):
        assert await selector.aselect(features, target, 3) == selector.select(features, target, 3)


def test_bad_arguments_raise_clear_errors() -> None:
    """k < 1, a non-numeric target, a length mismatch and bad fields raise naming them."""
    features, target = _features()
    for selector in (CorrelationSelector(), MutualInformationSelector()):
        with pytest.raises(ValueError, match="k must be"):
            selector.select(features, target, 0)
        with pytest.raises(TypeError, match="target must be numeric"):
            selector.select(features, pl.Series(["a"] * features.height), 1)
        with pytest.raises(ValueError, match="target has 3 values"):
            selector.select(features, pl.Series([1.0, 2.0, 3.0]), 1)
    with pytest.raises(ValueError, match="max_correlation"):
        CorrelationSelector(max_correlation=0)
    with pytest.raises(ValueError, match="bins"):
        MutualInformationSelector(bins=1)


def test_no_candidates_give_an_empty_selection() -> None:
    """A frame without numeric columns selects nothing."""
    selection = CorrelationSelector().select(pl.DataFrame({"s": ["a", "b"]}), pl.Series([1, 2]), 5)
    assert selection.names == ()
    assert dict(selection.scores) == {}


def test_mutual_information_samples_large_frames_deterministically() -> None:
    """Past max_rows it scores a fixed-seed sample: the same selection every time."""
    features, target = _features()
    selector = MutualInformationSelector(max_rows=1_000)
    first = selector.select(features, target, 2)
    assert first == selector.select(features, target, 2)
    assert set(first.names) <= {"strong", "strong_copy"}
    with pytest.raises(ValueError, match="max_rows"):
        MutualInformationSelector(max_rows=0)
