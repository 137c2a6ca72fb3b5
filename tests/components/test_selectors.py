"""The feature selectors: correlation with redundancy pruning, and mutual information."""

from __future__ import annotations

import io
import math
from typing import Any

import polars as pl
import pytest
import rich.console

from components import (
    CorrelationSelector,
    GeneratorRun,
    InteractionFeatures,
    LagFeatures,
    MutualInformationSelector,
    RollingFeatures,
    Selection,
    SelectionReport,
    SQLWindowFeatures,
    make_dataset,
    select_best_features_sync,
)
from components._selectors import SCORE_DIGITS, default_min_rows

Selector = CorrelationSelector | MutualInformationSelector


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


def _normal(seed: int, n: int) -> pl.Series:
    return make_dataset(n, seed=seed)["x1"]


def test_correlation_ranks_and_prunes_redundant_features() -> None:
    """The best feature comes first, its rescaled copy is dropped, then the next best."""
    features, target = _features()
    selection = CorrelationSelector().select(features, target, 3)
    # the copy scores the same up to rounding: the tie goes to the name that sorts first
    assert selection.names[:2] == ("strong", "medium")
    assert "strong_copy" not in selection.names
    assert selection.scores["strong"] > selection.scores["medium"] > selection.scores["noise"]


def test_correlation_scores_every_numeric_candidate_without_crashing_on_edge_cases() -> None:
    """A constant column scores 0; columns with no rows are unsupported, text no candidate."""
    features, target = _features()
    selection = CorrelationSelector().select(features, target, 20)
    assert set(selection.scores) == {"strong", "strong_copy", "medium", "noise", "constant"}
    assert selection.unsupported == ("all_null", "nan")
    assert selection.scores["constant"] == 0.0
    assert "constant" not in selection.names
    assert all(math.isfinite(v) for v in selection.scores.values())


def test_correlation_without_pruning_keeps_copies() -> None:
    """With max_correlation=1 redundant copies are kept."""
    features, target = _features()
    selection = CorrelationSelector(max_correlation=1.0).select(features, target, 2)
    assert selection.names == ("strong", "strong_copy")


def test_nulls_in_a_feature_use_the_rows_present() -> None:
    """A feature with some nulls and NaNs is scored on the rows where it is present."""
    features = pl.DataFrame({"x": [1.0, 2.0, None, 4.0, math.nan, 6.0]})
    target = pl.Series([2.0, 4.0, 100.0, 8.0, -50.0, 12.0])
    selection = CorrelationSelector(min_rows=2).select(features, target, 1)
    assert selection.scores["x"] == pytest.approx(1.0)


def test_correlation_equals_scipy_pearsonr_on_the_shared_rows() -> None:
    """Each score is |pearsonr| over the rows where feature and target are present (1e-12)."""
    stats = pytest.importorskip("scipy.stats")
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(12)
    n = 3_000
    y = rng.normal(size=n)
    columns: dict[str, Any] = {}
    for i, weight in enumerate((0.0, 0.05, 0.3, 1.0, -2.0, 10.0)):
        x = weight * y + rng.standard_t(3, size=n)
        x[rng.random(n) < 0.1 * i] = np.nan  # more and more missing values
        columns[f"x{i}"] = x
    y[rng.random(n) < 0.05] = np.nan
    features = pl.DataFrame(columns, nan_to_null=True)
    target = pl.Series("y", y, nan_to_null=True)
    selection = CorrelationSelector().select(features, target, 3)
    for name, x in columns.items():
        both = ~np.isnan(x) & ~np.isnan(y)
        expected = abs(stats.pearsonr(x[both], y[both]).statistic)
        assert selection.scores[name] == pytest.approx(expected, abs=1e-12, rel=0)


def test_mutual_information_ranks_informative_features_first() -> None:
    """Mutual information puts the informative features above noise and constants."""
    features, target = _features()
    selection = MutualInformationSelector().select(features, target, 2)
    assert selection.names == ("strong", "strong_copy")
    assert selection.scores["medium"] > selection.chance > selection.scores["noise"]
    assert selection.scores["constant"] == 0.0
    assert selection.unsupported == ("all_null", "nan")


def test_mutual_information_ranks_features_as_sklearns_knn_estimator() -> None:
    """On a seeded data set the scores rank features as sklearn's k-NN estimate does."""
    np = pytest.importorskip("numpy")
    stats = pytest.importorskip("scipy.stats")
    feature_selection = pytest.importorskip("sklearn.feature_selection")
    rng = np.random.default_rng(7)
    n = 1_500
    y = rng.normal(size=n)
    shapes = {"line": y, "square": y**2, "wave": np.sin(2 * y), "step": np.floor(y)}
    columns = {
        f"{shape}_{noise}": signal + noise * np.std(signal) * rng.normal(size=n)
        for shape, signal in shapes.items()
        for noise in (0.2, 0.6, 1.5, 4.0)
    }
    columns |= {f"noise_{i}": rng.normal(size=n) for i in range(4)}
    features = pl.DataFrame(columns)
    ours = MutualInformationSelector().select(features, pl.Series(y), 5).scores
    theirs = feature_selection.mutual_info_regression(
        features.to_numpy(), y, n_neighbors=3, random_state=0
    )
    agreement = stats.spearmanr([ours[c] for c in features.columns], theirs).statistic
    assert agreement > 0.9


def test_mutual_information_of_an_independent_target_selects_nothing() -> None:
    """A target independent of every feature selects nothing: no score beats chance."""
    features = make_dataset(600, seed=4).select("x1", "x2", "x3", "x4", "noise1", "noise2")
    target = _normal(5, 600)
    selection = MutualInformationSelector().select(features, target, 3)
    assert selection.names == ()
    assert selection.chance is not None
    assert selection.chance > 0
    assert max(selection.scores.values()) <= selection.chance
    # chance is measured, not assumed: the same features do beat it for a real target
    real = MutualInformationSelector().select(features, features["x3"] ** 2 + 0.1 * target, 3)
    assert real.names[0] == "x3"


def test_mutual_information_scores_are_near_zero_for_shuffled_targets() -> None:
    """The chance correction removes the plug-in bias: shuffled targets score about 0."""
    features = make_dataset(120, seed=8).select("x1", "x2", "x3", "x4", "noise1", "noise2")
    scores: list[float] = []
    for seed in range(10):
        target = features["x1"].shuffle(seed=seed)
        scores += MutualInformationSelector().select(features, target, 3).scores.values()
    # the uncorrected 16-bin estimate on 120 rows is about 0.99 nats for noise
    assert sorted(scores)[len(scores) // 2] < 0.02


def test_a_candidate_on_too_few_rows_is_not_scored() -> None:
    """A feature present on 2 of 500 rows is unsupported; the real signal is selected."""
    a, noise = _normal(1, 500), _normal(2, 500)
    rare = pl.Series([None] * 500, dtype=pl.Float64).scatter([10, 20], [1.0, -1.0])
    features = pl.DataFrame({"a": a, "a_div_b": a * rare, "noise": noise})
    target = a + 0.6 * noise
    for selector in (CorrelationSelector(), MutualInformationSelector()):
        selection = selector.select(features, target, 3)
        assert selection.unsupported == ("a_div_b",)
        assert "a_div_b" not in selection.scores
        assert selection.names[0] == "a"
    # an explicit minimum scores it
    assert "a_div_b" in CorrelationSelector(min_rows=2).select(features, target, 3).scores


def test_the_default_minimum_is_30_rows_or_a_tenth_of_the_target() -> None:
    """default_min_rows is max(30, 10% of the target's rows, rounded up)."""
    assert default_min_rows(5) == 30
    assert default_min_rows(300) == 30
    assert default_min_rows(301) == 31
    assert default_min_rows(10_000) == 1_000
    # counted on the rows where the target is present
    x = pl.Series([float(i) for i in range(40)])
    target = pl.Series([float(i) if i < 29 else None for i in range(40)])
    assert CorrelationSelector().select(x.to_frame("x"), target, 1).unsupported == ("x",)
    assert CorrelationSelector().select(x.to_frame("x"), x, 1).names == ("x",)


def test_pruning_compares_two_candidates_only_on_enough_shared_rows() -> None:
    """Two features equal on the 5 rows they share are not redundant: both are chosen."""
    signal, noise = _normal(1, 500), _normal(2, 500)
    row = pl.int_range(500, eager=True)
    first = pl.when(row < 300).then(signal).otherwise(None)
    second = pl.when(row >= 295).then(signal).otherwise(None)
    features = pl.DataFrame({"s": signal}).select(first.alias("first"), second.alias("second"))
    selection = CorrelationSelector().select(features, signal + 0.5 * noise, 2)
    assert set(selection.names) == {"first", "second"}
    # the same two, sharing enough rows, are redundant
    assert len(CorrelationSelector(min_rows=5).select(features, signal + noise, 2).names) == 1


@pytest.mark.parametrize(
    "selector",
    [CorrelationSelector(), MutualInformationSelector(max_rows=1_500)],
    ids=["correlation", "mutual_information"],
)
def test_shuffled_rows_with_an_order_column_give_the_same_ranking(selector: Selector) -> None:
    """The same names in the same ranks whatever the order of the rows (ties by name)."""
    frame = make_dataset(3_000, entities=5, seed=3)
    # a rescaled copy: its features tie with the original's up to the last bits
    frame = frame.with_columns((pl.col("x3") * 3 + 1).alias("x3_copy"))

    def names(data: pl.DataFrame) -> tuple[str, ...]:
        keys = {"entity": "entity", "order": "order"}
        with SQLWindowFeatures(**keys) as sql:
            generators = [
                LagFeatures(**keys),
                RollingFeatures(**keys),
                InteractionFeatures(**keys),
                sql,
            ]
            report = select_best_features_sync(
                data, target="target", generators=generators, selector=selector, k=20
            )
        return report.selection.names

    expected = names(frame)
    assert len(expected) == 20
    for seed in range(3):
        assert names(frame.sample(fraction=1.0, shuffle=True, seed=seed)) == expected


def test_scores_are_ranked_after_rounding_then_by_name() -> None:
    """Scores equal to SCORE_DIGITS decimal places tie, and the tie goes to the first name."""
    x = _normal(1, 400)
    y = x + 0.3 * _normal(2, 400)
    # "b" and "a" are the same values up to the last bits (exact copies of x, rescaled)
    features = pl.DataFrame({"b": x * 7.0 / 7.0 * (1 + 1e-15), "a": x, "c": _normal(3, 400)})
    selection = CorrelationSelector(max_correlation=1.0).select(features, y, 2)
    assert round(selection.scores["a"], SCORE_DIGITS) == round(selection.scores["b"], SCORE_DIGITS)
    assert selection.names == ("a", "b")


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
    with pytest.raises(ValueError, match="permutations"):
        MutualInformationSelector(permutations=0)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="min_rows"):
            CorrelationSelector(min_rows=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="min_rows"):
            MutualInformationSelector(min_rows=bad)  # type: ignore[arg-type]


def test_no_candidates_give_an_empty_selection() -> None:
    """A frame without numeric columns selects nothing."""
    selection = CorrelationSelector().select(pl.DataFrame({"s": ["a", "b"]}), pl.Series([1, 2]), 5)
    assert selection.names == ()
    assert dict(selection.scores) == {}


def test_mutual_information_samples_large_frames_deterministically() -> None:
    """Past max_rows it scores a sample chosen by content: the same selection every time."""
    features, target = _features()
    selector = MutualInformationSelector(max_rows=1_000)
    first = selector.select(features, target, 2)
    assert first == selector.select(features, target, 2)
    assert first.names == ("strong", "strong_copy")
    with pytest.raises(ValueError, match="max_rows"):
        MutualInformationSelector(max_rows=0)


def test_a_selection_refuses_a_name_both_scored_and_unsupported() -> None:
    """Unsupported candidates have no score."""
    with pytest.raises(ValueError, match="unsupported"):
        Selection(("a",), {"a": 1.0}, unsupported=("a",))


def _rendered(selection: Selection) -> tuple[str, str, dict[str, Any]]:
    report = SelectionReport(
        features=pl.DataFrame({name: [1.0] for name in selection.names}),
        selection=selection,
        generators=[GeneratorRun("lag", "thread", 0.0, 1.0, 1, 1, "ok")],
    )
    out = io.StringIO()
    rich.console.Console(file=out, width=120, color_system=None).print(report)
    return out.getvalue(), report._repr_html_(), report.as_dict()


def test_the_report_says_when_no_feature_beat_chance() -> None:
    """A selection below chance, with unsupported candidates, says both in every format."""
    features = make_dataset(600, seed=4).select("x1", "x2", "x3", "x4", "noise1", "noise2")
    features = features.with_columns(pl.lit(None, pl.Float64).alias("empty"))
    selection = MutualInformationSelector().select(features, _normal(5, 600), 3)
    text, html, summary = _rendered(selection)
    for rendered in (text, html):
        assert "no feature beat chance (chance level" in rendered
        assert "1 candidate not scored: too few rows shared with the target" in rendered
    assert summary["selected"] == []
    assert summary["unsupported"] == 1
    assert summary["chance"] == selection.chance


def test_the_report_shows_the_chance_level_of_a_selection() -> None:
    """With features above chance the report gives the level they beat."""
    features, target = _features()
    text, _, summary = _rendered(MutualInformationSelector().select(features, target, 2))
    assert "chance level: 0.0" in text
    assert "not scored" in text  # the two columns with no rows
    assert summary["unsupported"] == 2
    text, _, summary = _rendered(CorrelationSelector().select(features, target, 2))
    assert "chance" not in text
    assert summary["chance"] is None


@pytest.mark.parametrize(
    "selector", [CorrelationSelector(max_correlation=1.0), MutualInformationSelector()]
)
def test_infinities_count_as_missing_in_the_selectors(
    selector: CorrelationSelector | MutualInformationSelector,
) -> None:
    """One inf in a feature or the target is skipped like NaN, not scoring everything 0."""
    n = 200
    target = pl.Series("y", [float(i % 17) for i in range(n)])
    good = [float(i % 17) + 0.1 * (i % 3) for i in range(n)]
    with_inf = list(good)
    with_inf[5] = math.inf
    features = pl.DataFrame({"good": good, "with_inf": with_inf, "noise": [0.0, 1.0] * (n // 2)})
    selection = selector.select(features, target, 2)
    assert set(selection.names) == {"good", "with_inf"}
    assert selection.scores["with_inf"] == pytest.approx(selection.scores["good"], rel=0.05)
    target_inf = target.clone()
    target_inf[3] = -math.inf
    assert set(selector.select(features, target_inf, 2).names) == {"good", "with_inf"}
