"""Feature selectors: absolute correlation (with redundancy pruning) and mutual information."""

from __future__ import annotations

import math
import sys
from typing import Final, final

import attrs
import polars as pl

from ._common import check_name
from ._interfaces import Selection, SyncFeatureSelector

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

__all__ = ["CorrelationSelector", "MutualInformationSelector"]

_TARGET: Final = "__concur_target"


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return k


def prepare(
    features: pl.DataFrame, target: pl.Series, owner: str
) -> tuple[pl.DataFrame, list[str]]:
    """The numeric candidates and the target as one Float64 frame, NaN as null.

    Non-numeric columns of *features* are not candidates.

    Raises:
        TypeError: *features* is not a polars frame, or *target* not a numeric series.
        ValueError: *target* and *features* differ in length.
    """
    if not isinstance(features, pl.DataFrame):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(
            f"{owner}: features must be a polars DataFrame, got {type(features).__name__}"
        )
    if not isinstance(target, pl.Series):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"{owner}: target must be a polars Series, got {type(target).__name__}")
    if not (target.dtype.is_numeric() or target.dtype == pl.Boolean):
        raise TypeError(f"{owner}: target must be numeric, got dtype {target.dtype}")
    if target.len() != features.height:
        raise ValueError(
            f"{owner}: target has {target.len()} values but features has {features.height} rows"
        )
    candidates = [
        name
        for name, dtype in features.schema.items()
        if (dtype.is_numeric() or dtype == pl.Boolean) and name != _TARGET
    ]
    frame = (
        target.cast(pl.Float64)
        .fill_nan(None)
        .alias(_TARGET)
        .to_frame()
        .with_columns(features.select(candidates).cast(pl.Float64).fill_nan(None))
    )
    return frame, candidates


def _finite(value: object) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return 0.0
    return float(value) if math.isfinite(value) else 0.0


def _abs_corr(a: str, b: str) -> pl.Expr:
    x, y = pl.col(a), pl.col(b)
    both = x.is_not_null() & y.is_not_null()
    return pl.corr(x.filter(both), y.filter(both)).abs()


def _ranked(names: list[str], scores: dict[str, float]) -> list[str]:
    # best first; ties keep the input order, so the result is deterministic
    return sorted(names, key=lambda name: -scores[name])


@final
@attrs.frozen(kw_only=True)
class CorrelationSelector(SyncFeatureSelector):
    """Rank features by absolute Pearson correlation with the target, pruning redundancy.

    A candidate's score is ``|corr(feature, target)|`` over the rows where both are
    present (NaN counts as missing); a constant or empty column scores 0. Going down the
    ranking, a candidate whose absolute correlation with an already chosen feature exceeds
    *max_correlation* is dropped, until *k* are chosen. Non-numeric columns are not
    candidates.

    Attributes:
        name: the selector's name.
        max_correlation: the largest absolute correlation allowed between two chosen
            features (1.0 disables the pruning).
        min_score: candidates scoring at most this are never chosen.
    """

    name: str = "correlation"
    max_correlation: float = 0.95
    min_score: float = 0.0

    def __attrs_post_init__(self) -> None:
        check_name(self.name, "CorrelationSelector")
        if not 0 < self.max_correlation <= 1:
            raise ValueError(
                f"CorrelationSelector: max_correlation must be in (0, 1], "
                f"got {self.max_correlation!r}"
            )

    @override
    def select(self, features: pl.DataFrame, target: pl.Series, k: int) -> Selection:
        """Score every numeric column and choose at most *k* (blocking).

        Raises:
            TypeError: *target* is not numeric, or *k* is not an int.
            ValueError: ``k < 1``, or *target* and *features* differ in length.
        """
        k = _check_k(k)
        frame, candidates = prepare(features, target, "CorrelationSelector")
        if not candidates:
            return Selection((), {})
        row = frame.select([_abs_corr(c, _TARGET).alias(c) for c in candidates]).row(0)
        scores = {c: _finite(v) for c, v in zip(candidates, row, strict=True)}
        chosen: list[str] = []
        for name in _ranked(candidates, scores):
            if len(chosen) == k or scores[name] <= self.min_score:
                break
            if chosen and self.max_correlation < 1:
                row = frame.select([_abs_corr(name, c).alias(c) for c in chosen]).row(0)
                if any(_finite(v) > self.max_correlation for v in row):
                    continue
            chosen.append(name)
        return Selection(chosen, scores)


@final
@attrs.frozen(kw_only=True)
class MutualInformationSelector(SyncFeatureSelector):
    """Rank features by binned mutual information with the target.

    Feature and target are each cut into at most *bins* equal-frequency bins (ties share a
    bin, so a constant column has one bin and scores 0), over the rows where both are
    present; the score is the mutual information of the two binnings, in nats. The best
    *k* are chosen. Non-numeric columns are not candidates.

    Attributes:
        name: the selector's name.
        bins: the number of bins per variable (at least 2).
        min_score: candidates scoring at most this are never chosen.
    """

    name: str = "mutual_information"
    bins: int = 16
    min_score: float = 0.0

    def __attrs_post_init__(self) -> None:
        check_name(self.name, "MutualInformationSelector")
        bins = self.bins
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"MutualInformationSelector: bins must be an int >= 2, got {bins!r}")

    @override
    def select(self, features: pl.DataFrame, target: pl.Series, k: int) -> Selection:
        """Score every numeric column and choose at most *k* (blocking).

        Raises:
            TypeError: *target* is not numeric, or *k* is not an int.
            ValueError: ``k < 1``, or *target* and *features* differ in length.
        """
        k = _check_k(k)
        frame, candidates = prepare(features, target, "MutualInformationSelector")
        scores = {c: self._score(frame, c) for c in candidates}
        chosen = [c for c in _ranked(candidates, scores) if scores[c] > self.min_score][:k]
        return Selection(chosen, scores)

    def _binned(self, column: str) -> pl.Expr:
        x = pl.col(column)
        rank = x.rank("min") - 1
        return (rank * self.bins / x.len()).floor().cast(pl.Int32)

    def _score(self, frame: pl.DataFrame, column: str) -> float:
        both = frame.select(column, _TARGET).drop_nulls()
        n = both.height
        if n == 0:
            return 0.0
        counts = (
            both.select(self._binned(column).alias("x"), self._binned(_TARGET).alias("y"))
            .group_by("x", "y")
            .len()
        )
        px: dict[int, int] = {}
        py: dict[int, int] = {}
        joint = counts.rows()
        for x, y, c in joint:
            px[x] = px.get(x, 0) + c
            py[y] = py.get(y, 0) + c
        mi = 0.0
        for x, y, c in joint:
            mi += c / n * math.log(c * n / (px[x] * py[y]))
        return _finite(max(mi, 0.0))
